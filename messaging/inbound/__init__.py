"""Replies that come back through SendGrid Inbound Parse: parse, match, classify, list."""
