"""The campaigns REST API: campaigns and plan versions, enrollment, and the lead timeline."""
