"""The API's routers: submit, read, health."""
