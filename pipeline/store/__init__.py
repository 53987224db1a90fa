"""What lasts on disk: the SQLite journal, the result store, quarantine and atomic writes."""
