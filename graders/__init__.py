"""First-party graders of rftkit, each module an ordinary plugin (see ``rft.plugins.manager.DEFAULT_PLUGINS``)."""
