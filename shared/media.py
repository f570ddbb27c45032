"""Media types accepted for technical files, and the format each one means (kept import-light)."""
CONTENT_TYPES = {"application/json": "json", "application/xml": "xml", "text/xml": "xml", "text/csv": "csv"}
