"""Provider webhooks: verify, store raw, answer 2xx fast; normalisation happens in a task."""
