"""The one corner of behavior that touches files: the formats the batch and serving sides share."""
