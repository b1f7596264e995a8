"""First-party graders of rftkit, each module an ordinary plugin (see ``rft.plugins.DEFAULT_PLUGINS``)."""
