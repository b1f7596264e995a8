"""Ray clusters: the connection, Ray Train learners and Ray Jobs."""
