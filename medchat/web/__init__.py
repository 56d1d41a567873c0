"""What the API and the console share: the request's context and transaction, security headers,
uploads, the re-wrap drain hook, error answers, cursors, response helpers, bearer authentication,
the permission guard and throttling. Blueprints (``medchat.api``, ``medchat.console``) build on it
and never import each other."""
