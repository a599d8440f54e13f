"""The HTTP side: blueprints for the browser pages and the JSON API, sign-in, and the HTTP
edge that turns every :class:`~gateway.errors.GatewayError` into the contract's answer.

May import everything below it (the services and every domain); nothing below imports it.
"""
