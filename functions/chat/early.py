"""Imported first by functions/chat/app.py, before the web stack: starts loading the model in a thread
(functions/chat/preload.py), so the load and the imports run side by side."""

from functions.chat import preload

preload.start_from_settings()
