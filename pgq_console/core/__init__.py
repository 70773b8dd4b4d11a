"""Non-UI domain of pgq-console: connections, drivers, stats, demo. Never imports Textual."""
