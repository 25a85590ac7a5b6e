"""Transcript output formats: text, jsonl, srt, vtt, ctm."""

from __future__ import annotations

import json
import re

from asr.word_timing import WordTiming
from asr.transcribe import Transcript, format_output_file, format_transcript, subtitle_cues

WORDS = (
    WordTiming("RUBOUT", 0.24, 0.6, 0.99),
    WordTiming("G", 1.44, 1.47, 0.8),
    WordTiming("M", 1.92, 1.95, 0.9),
    WordTiming("NINE", 3661.5, 3662.25, 0.5),  # after a long pause, past one hour
)
TRANSCRIPT = Transcript("dir/an406-fcaw-b.wav", "RUBOUT G M NINE", 3663.0, WORDS)


def test_text_format_is_path_tab_text():
    assert format_transcript(TRANSCRIPT, "text") == "dir/an406-fcaw-b.wav\tRUBOUT G M NINE"


def test_jsonl_has_audio_text_words_and_duration():
    record = json.loads(format_transcript(TRANSCRIPT, "jsonl"))
    assert record["audio"] == "dir/an406-fcaw-b.wav" and record["text"] == "RUBOUT G M NINE"
    assert record["duration"] == 3663.0
    assert record["words"][1] == {"word": "G", "start": 1.44, "end": 1.47, "confidence": 0.8}


def test_srt_numbers_cues_and_uses_comma_milliseconds():
    srt = format_transcript(TRANSCRIPT, "srt")
    blocks = srt.strip().split("\n\n")
    assert blocks[0] == "1\n00:00:00,240 --> 00:00:00,600\nRUBOUT"  # 0.84 s pause > CUE_MAX_GAP
    assert blocks[1] == "2\n00:00:01,440 --> 00:00:01,950\nG M"
    assert blocks[2] == "3\n01:01:01,500 --> 01:01:02,250\nNINE"
    timing = re.compile(r"^\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}$")
    assert all(timing.match(block.splitlines()[1]) for block in blocks)


def test_vtt_has_header_and_dot_milliseconds():
    vtt = format_transcript(TRANSCRIPT, "vtt")
    assert vtt.startswith("WEBVTT\n\n")
    assert "00:00:01.440 --> 00:00:01.950\nG M" in vtt
    assert "," not in vtt


def test_ctm_one_line_per_word_with_duration_and_confidence():
    lines = format_transcript(TRANSCRIPT, "ctm").splitlines()
    assert lines[0] == "an406-fcaw-b 1 0.24 0.36 RUBOUT 0.99"
    assert len(lines) == 4
    for line in lines:
        name, channel, start, duration, word, confidence = line.split()
        assert float(duration) > 0 and 0 <= float(confidence) <= 1


def test_a_text_output_file_holds_the_transcript_alone():
    assert format_output_file(TRANSCRIPT, "text") == "RUBOUT G M NINE\n"
    assert format_output_file(Transcript("silence.wav"), "text") == "\n"


def test_other_output_files_hold_their_format_and_end_in_a_newline():
    assert format_output_file(TRANSCRIPT, "jsonl") == format_transcript(TRANSCRIPT, "jsonl") + "\n"
    assert format_output_file(TRANSCRIPT, "ctm") == format_transcript(TRANSCRIPT, "ctm") + "\n"
    assert format_output_file(TRANSCRIPT, "srt") == format_transcript(TRANSCRIPT, "srt")


def test_cues_split_after_max_words():
    words = [WordTiming(str(i), i * 0.3, i * 0.3 + 0.2, 1.0) for i in range(25)]
    assert [len(c) for c in subtitle_cues(words)] == [10, 10, 5]
