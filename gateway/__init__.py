"""Encrypting upload gateway for patient files."""
