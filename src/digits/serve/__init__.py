"""The web app and REST API around one trained model (FastAPI on uvicorn), and its drawing page.

    digits serve runs/seed/checkpoint.pt --port 8000      # then open http://127.0.0.1:8000/
"""
from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
