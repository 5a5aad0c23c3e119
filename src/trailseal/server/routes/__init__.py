"""Route modules; each exposes ``router(runtime) -> APIRouter`` and is listed in ``app.ROUTERS``."""
