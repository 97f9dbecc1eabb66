"""One module per resource: parse the request, call one service, map the result.

No route runs SQL, decides access or imports another module's private names;
what two routes share is a service in ``policies`` or ``api.services``.
"""
