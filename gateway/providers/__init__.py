"""Providers the gateway can route to over HTTP; the local tier lives in gateway/local."""
