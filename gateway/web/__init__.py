"""The HTTP side: blueprints for the browser pages and the JSON API."""
