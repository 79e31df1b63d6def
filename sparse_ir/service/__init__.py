"""The search service: an HTTP API and a search page over the library's searchers.

Needs the ``service`` extra (``pip install 'sparse-ir[service]'``: FastAPI, uvicorn, httpx).
Nothing else in sparse_ir imports this package.

    >>> from sparse_ir.service import ServiceSettings
    >>> ServiceSettings(max_k=100).max_k
    100

Run it with ``sparse-ir serve --index indexes/demo`` or embed it::

    from sparse_ir.service import create_app, ServiceSettings
    app = create_app("indexes/demo", settings=ServiceSettings(max_k=100))
"""

from __future__ import annotations

from sparse_ir.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        try:
            from sparse_ir.service.app import create_app
        except ImportError as error:
            if getattr(error, "name", None) in ("fastapi", "starlette", "pydantic", "uvicorn"):
                from sparse_ir.errors import MissingDependencyError

                raise MissingDependencyError("the search service", error.name, "service") from None
            raise
        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
