"""Astria Discord bot: fine-tunes on members' photos through Astria, images back in Discord."""

__version__ = "0.1.0"
