"""A recurrent CTC speech recogniser: audio -> log-mel -> bidirectional RNN -> CTC -> text.

    import asr
    print(asr.load().transcribe_file("talk.wav").text)   # the default bundled model (asr.loading)
"""

from asr.loading import load

__version__ = "0.1.0"
__all__ = ["load", "__version__"]
