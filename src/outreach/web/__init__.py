"""The web app: tracked links, the sign and unsubscribe pages, signatories, admin pages.

``create_app`` (in ``app``) builds the one FastAPI application; ``server.serve`` runs it.
"""
