"""Venue adapters: per venue a sans-I/O ``codec.py``, ``auth.py`` and an asyncio ``adapter.py``."""
