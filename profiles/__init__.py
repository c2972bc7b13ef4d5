"""Device profiles (YAML), installed as ``dass_edge.profiles``."""
