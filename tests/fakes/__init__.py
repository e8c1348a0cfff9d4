"""In-process stand-ins for the services the library talks to (loopback servers, no network)."""
