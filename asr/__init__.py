"""A recurrent CTC speech recogniser: audio -> log-mel -> bidirectional RNN -> CTC -> text."""

__version__ = "0.1.0"
