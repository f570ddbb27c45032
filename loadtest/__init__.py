"""The capacity load test (`make load`), see __main__.py."""
