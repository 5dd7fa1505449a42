"""The model gateway: every model call in Riverbed goes through here."""
