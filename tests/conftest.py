"""Suite-wide fixtures. The leak check plugin runs for every test."""

pytest_plugins = ["tests.leakcheck"]
