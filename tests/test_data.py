"""asr.data: manifests, transcripts, feature computation, the dataset, bucketing sampler, collation."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.data import Batch, FeatureDataset, LengthBucketSampler, collate, compute_features

from asr.manifest import ManifestError, Utterance, read_manifest, read_transcripts, write_manifest
from asr.errors import ASRError
from asr.frontend import Cmvn, FeatureConfig
from asr.specaugment import SpecAugmentConfig
from asr.text import Vocab


def write_wav(path: Path, seconds: float = 0.2, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(str(path), (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
    return path


def write_lines(path: Path, lines: list) -> Path:
    """lines: dicts/lists (written as JSON), str (written as is) or bytes (written raw)."""
    with open(path, "wb") as f:
        for line in lines:
            if isinstance(line, (dict, list)):
                line = json.dumps(line)
            if isinstance(line, str):
                line = line.encode("utf-8")
            f.write(line + b"\n")
    return path


# --- read_manifest -----------------------------------------------------------------------------


def test_read_manifest_good_file_resolves_relative_audio(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_wav(data / "wav" / "a.wav")
    absolute = write_wav(tmp_path / "elsewhere" / "b.wav")
    manifest = write_lines(
        data / "train.jsonl",
        [
            {"id": "a", "audio": "wav/a.wav", "duration": 0.2, "text": "HELLO", "speaker": "spk1"},
            "",  # blank lines are skipped
            {"id": "b", "audio": str(absolute), "duration": 1, "text": "WORLD"},
        ],
    )
    utts = read_manifest(manifest)
    assert utts == [
        Utterance(id="a", audio=str(data / "wav" / "a.wav"), duration=0.2, text="HELLO", speaker="spk1"),
        Utterance(id="b", audio=str(absolute), duration=1.0, text="WORLD", speaker=""),
    ]
    assert isinstance(utts[1].duration, float)
    assert Path(utts[0].audio).is_file()


def test_read_manifest_reports_every_problem_with_path_and_line(tmp_path):
    write_wav(tmp_path / "ok.wav")
    ok = {"id": "u1", "audio": "ok.wav", "duration": 0.2, "text": "A"}
    manifest = write_lines(
        tmp_path / "bad.jsonl",
        [
            ok,  # 1: fine
            '{"id": "u2", "audio": "ok.wav", ',  # 2: malformed JSON
            {"id": "u3", "audio": "ok.wav", "duration": 0.2},  # 3: missing field text
            {"id": "u4", "audio": "ok.wav", "duration": "0.2", "text": "A"},  # 4: wrong type
            dict(ok),  # 5: duplicate id u1
            {"id": "u6", "audio": "ok.wav", "duration": -1.0, "text": "A"},  # 6: negative duration
            {"id": "u7", "audio": "missing.wav", "duration": 0.2, "text": "A"},  # 7: missing audio
            b'{"id": "u8", "audio": "ok.wav", "duration": 0.2, "text": "caf\xe9"}',  # 8: Latin-1, not UTF-8
            {"id": "u9", "audio": "ok.wav", "duration": 0.2, "text": "B"},  # 9: fine
        ],
    )
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    lines = str(info.value).splitlines()
    assert len(lines) == 7
    prefix = re.escape(str(manifest))
    numbers = [int(re.match(rf"{prefix}:(\d+): ", line).group(1)) for line in lines]
    assert numbers == [2, 3, 4, 5, 6, 7, 8]
    by_line = dict(zip(numbers, lines))
    assert "text" in by_line[3]
    assert "duration" in by_line[4]
    assert "u1" in by_line[5]
    assert "missing.wav" in by_line[7]
    assert issubclass(ManifestError, ASRError)


@pytest.mark.parametrize(
    "record",
    [
        {"id": "x", "audio": "a.wav", "duration": 0, "text": "A"},  # zero duration
        {"id": "x", "audio": "a.wav", "duration": True, "text": "A"},  # bool is not a number here
        {"id": "x", "audio": 5, "duration": 1.0, "text": "A"},
        {"id": "x", "audio": "a.wav", "duration": 1.0, "text": None},
        {"id": "", "audio": "a.wav", "duration": 1.0, "text": "A"},  # empty id
        ["x", "a.wav", 1.0, "A"],  # not an object
    ],
)
def test_read_manifest_rejects_bad_record(tmp_path, record):
    write_wav(tmp_path / "a.wav")
    manifest = write_lines(tmp_path / "m.jsonl", [record])
    with pytest.raises(ManifestError, match=re.escape(f"{manifest}:1:")):
        read_manifest(manifest)


def test_read_manifest_check_audio_false_skips_existence(tmp_path):
    manifest = write_lines(
        tmp_path / "m.jsonl", [{"id": "a", "audio": "nowhere/a.wav", "duration": 1.5, "text": "HI"}]
    )
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(manifest)
    utts = read_manifest(manifest, check_audio=False)
    assert [u.audio for u in utts] == [str(tmp_path / "nowhere" / "a.wav")]


def test_read_manifest_empty_or_missing(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ManifestError, match="empty.jsonl"):
        read_manifest(empty)
    with pytest.raises(ManifestError, match="missing.jsonl"):
        read_manifest(tmp_path / "missing.jsonl")


def test_write_read_manifest_round_trip(tmp_path):
    utts = [
        Utterance(id="a", audio=str(tmp_path / "a.wav"), duration=1.25, text="HELLO WORLD", speaker="s1"),
        Utterance(id="b", audio=str(tmp_path / "sub" / "b.flac"), duration=3.0, text="CAFÉ ÜBER", speaker=""),
    ]
    path = tmp_path / "out.jsonl"
    write_manifest(path, utts)
    assert read_manifest(path, check_audio=False) == utts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temp file left behind


# --- read_transcripts --------------------------------------------------------------------------


def test_read_transcripts_jsonl(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [{"id": "a", "text": "HELLO"}, "", {"id": "b", "text": "TWO  WORDS"}])
    assert read_transcripts(path) == {"a": "HELLO", "b": "TWO WORDS"}


def test_read_transcripts_kaldi_text(tmp_path):
    path = tmp_path / "text"
    path.write_text("utt1 HELLO   WORLD\n\nutt2 YES\nutt3\n")
    assert read_transcripts(path) == {"utt1": "HELLO WORLD", "utt2": "YES", "utt3": ""}


def test_read_transcripts_kaldi_text_tab_separated(tmp_path):
    path = tmp_path / "text"
    path.write_text("utt1\tHELLO WORLD\nutt2\tYES\n")
    assert read_transcripts(path) == {"utt1": "HELLO WORLD", "utt2": "YES"}


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("t.jsonl", '{"id": "a", "text": "X"}\n{"id": "a", "text": "Y"}\n', 2),
        ("text", "a X\nb Y\nb Z\n", 3),
    ],
)
def test_read_transcripts_duplicate_id(tmp_path, name, content, line):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ManifestError, match=re.escape(f"{path}:{line}: duplicate id")):
        read_transcripts(path)


def test_read_transcripts_bad_jsonl_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "text": "X"}\n{"id": "b"}\n{"id": 3, "text": "Z"}\nnot json\n')
    with pytest.raises(ManifestError) as info:
        read_transcripts(path)
    lines = str(info.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:2", f"{path}:3", f"{path}:4"]


def test_read_transcripts_missing_or_not_utf8(tmp_path):
    with pytest.raises(ManifestError, match="nope.txt"):
        read_transcripts(tmp_path / "nope.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"a caf\xe9\n")
    with pytest.raises(ManifestError, match="latin1.txt"):
        read_transcripts(bad)


# --- compute_features --------------------------------------------------------------------------


def test_compute_features_keeps_good_and_reports_bad(tmp_path):
    good1 = write_wav(tmp_path / "g1.wav", seconds=0.3)
    good2 = write_wav(tmp_path / "g2.wav", seconds=0.5, seed=1)
    text = tmp_path / "bad.wav"
    text.write_text("not audio at all")
    utts = [
        Utterance("g1", str(good1), 0.3, "A"),
        Utterance("bad", str(text), 1.0, "B"),
        Utterance("gone", str(tmp_path / "gone.wav"), 1.0, "C"),
        Utterance("g2", str(good2), 0.5, "D"),
    ]
    config = FeatureConfig()
    kept, feats, failures = compute_features(utts, config)
    assert [u.id for u in kept] == ["g1", "g2"]
    assert [f.shape for f in feats] == [(4800 // 160 + 1, 80), (8000 // 160 + 1, 80)]
    assert len(failures) == 2
    assert failures[0].startswith("bad: ") and str(text) in failures[0]
    assert failures[1].startswith("gone: ") and "gone.wav" in failures[1]


# --- FeatureDataset ----------------------------------------------------------------------------


def make_dataset(specaugment=None, seed=0):
    gen = torch.Generator().manual_seed(0)
    utts = [Utterance("u0", "a.wav", 1.0, "AB"), Utterance("u1", "b.wav", 1.0, "BA A"), Utterance("u2", "c.wav", 1.0, "B")]
    feats = [torch.randn(n, 8, generator=gen) * 3 + 2 for n in (120, 90, 60)]  # (T, F=8)
    vocab = Vocab.from_texts(u.text for u in utts)
    cmvn = Cmvn(mean=tuple(float(x) for x in range(8)), std=tuple(0.5 + x for x in range(8)))
    return FeatureDataset(utts, feats, vocab, cmvn, specaugment, seed=seed), feats, vocab, cmvn


def test_feature_dataset_applies_cmvn_and_encodes_text():
    dataset, raw, vocab, cmvn = make_dataset()
    assert len(dataset) == 3
    assert dataset.num_frames == [120, 90, 60]
    utt_id, feats, tokens = dataset[1]
    assert utt_id == "u1"
    mean, std = torch.tensor(cmvn.mean), torch.tensor(cmvn.std)
    torch.testing.assert_close(feats, (raw[1] - mean) / std)
    assert tokens.dtype == torch.long
    assert tokens.tolist() == vocab.encode("BA A")


def test_feature_dataset_without_specaugment_is_the_same_every_epoch():
    dataset, *_ = make_dataset(specaugment=SpecAugmentConfig(freq_masks=0, time_masks=0))
    first = dataset[0][1]
    dataset.set_epoch(5)
    assert torch.equal(dataset[0][1], first)


def test_feature_dataset_specaugment_varies_by_epoch_but_is_reproducible():
    config = SpecAugmentConfig(freq_masks=2, freq_mask_width=4, time_masks=2, time_mask_width=20)
    dataset, *_ = make_dataset(specaugment=config, seed=3)
    plain, *_ = make_dataset()
    dataset.set_epoch(0)
    epoch0 = [dataset[i][1] for i in range(3)]
    assert any(not torch.equal(a, plain[i][1]) for i, a in enumerate(epoch0))  # some cells masked
    dataset.set_epoch(1)
    epoch1 = [dataset[i][1] for i in range(3)]
    assert any(not torch.equal(a, b) for a, b in zip(epoch0, epoch1))
    dataset.set_epoch(0)
    for i in reversed(range(3)):  # order of access does not matter
        assert torch.equal(dataset[i][1], epoch0[i])
    # another dataset with the same seed draws the same masks
    again, *_ = make_dataset(specaugment=config, seed=3)
    assert torch.equal(again[2][1], epoch0[2])


def test_feature_dataset_draws_one_speed_variant_per_epoch_reproducibly():
    utts = [Utterance(f"u{i}", "a.wav", 1.0, "A") for i in range(20)]
    # variant k of every utterance is filled with the value k, so the chosen variant is visible
    variants = [tuple(torch.full((10 + k, 2), float(k)) for k in range(3)) for _ in utts]
    cmvn = Cmvn(mean=(0.0, 0.0), std=(1.0, 1.0))
    dataset = FeatureDataset(utts, variants, Vocab.from_texts(["A"]), cmvn, seed=7)
    assert dataset.num_frames == [10] * 20  # lengths of the first variant

    def chosen(epoch):
        dataset.set_epoch(epoch)
        return [int(dataset[i][1][0, 0]) for i in range(len(utts))]

    epoch0 = chosen(0)
    assert set(epoch0) == {0, 1, 2}  # 20 draws from 3 variants use them all
    assert chosen(1) != epoch0
    assert chosen(0) == epoch0
    for i, k in enumerate(epoch0):
        assert dataset[i][1].shape[0] == 10 + k


def test_feature_dataset_two_views_are_two_reproducible_specaugment_draws():
    config = SpecAugmentConfig(freq_masks=2, freq_mask_width=4, time_masks=2, time_mask_width=20)
    single, *_ = make_dataset(specaugment=config, seed=3)
    double, *_ = make_dataset(specaugment=config, seed=3)
    double.views = 2
    for epoch in (0, 1):
        single.set_epoch(epoch)
        double.set_epoch(epoch)
        for i in range(3):
            utt_id, views, tokens = double[i]
            assert views.shape == (2, *single[i][1].shape)
            assert torch.equal(views[0], single[i][1])  # the first view is what training without views sees
            assert torch.equal(tokens, single[i][2]) and utt_id == single[i][0]
            assert torch.equal(double[i][1], views)  # reproducible
        assert any(not torch.equal(double[i][1][0], double[i][1][1]) for i in range(3))  # other masks


# --- collate -----------------------------------------------------------------------------------


def test_collate_pads_and_records_lengths():
    items = [
        ("a", torch.ones(5, 3), torch.tensor([1, 2])),
        ("b", 2 * torch.ones(7, 3), torch.tensor([3, 4, 5, 6])),
        ("c", 3 * torch.ones(2, 3), torch.tensor([7])),
    ]
    batch = collate(items)
    assert isinstance(batch, Batch)
    assert batch.ids == ["a", "b", "c"]
    assert batch.feats.shape == (3, 7, 3)  # (B, max T, F)
    assert batch.tokens.shape == (3, 4)  # (B, max U)
    assert batch.feat_lens.tolist() == [5, 7, 2]
    assert batch.token_lens.tolist() == [2, 4, 1]
    for i, (_, f, t) in enumerate(items):
        assert torch.equal(batch.feats[i, : len(f)], f)
        assert (batch.feats[i, len(f) :] == 0).all()
        assert torch.equal(batch.tokens[i, : len(t)], t)
        assert (batch.tokens[i, len(t) :] == 0).all()
    moved = batch.to("cpu")
    assert torch.equal(moved.feats, batch.feats) and moved.ids == batch.ids


def test_collate_of_two_view_items_puts_the_views_one_after_the_other():
    items = [("a", torch.stack([torch.ones(5, 3), 2 * torch.ones(5, 3)]), torch.tensor([1, 2])),
             ("b", torch.stack([3 * torch.ones(7, 3), 4 * torch.ones(7, 3)]), torch.tensor([3]))]
    batch = collate(items)
    assert batch.views == 2
    assert batch.ids == ["a", "b", "a", "b"]
    assert batch.feats.shape == (4, 7, 3)
    assert batch.feat_lens.tolist() == [5, 7, 5, 7]
    assert batch.token_lens.tolist() == [2, 1, 2, 1]
    assert [float(batch.feats[row, 0, 0]) for row in range(4)] == [1.0, 3.0, 2.0, 4.0]
    assert batch.to("cpu").views == 2 and collate([(i, f[0], t) for i, f, t in items]).views == 1


# --- LengthBucketSampler -----------------------------------------------------------------------


def random_lengths(n: int = 600, seed: int = 0) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(50, 1500, (n,), generator=gen).tolist()


def padding_waste(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return (padded - sum(lengths)) / sum(lengths)


def test_sampler_every_index_once_per_epoch_within_limits():
    lengths = random_lengths()
    sampler = LengthBucketSampler(lengths, max_frames=6000, max_batch_size=8, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(sampler) == len(batches)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for batch in batches:
            assert batch
            assert max(lengths[i] for i in batch) * len(batch) <= 6000
            assert len(batch) <= 8


def test_sampler_max_batch_size_caps_short_utterances():
    lengths = [10] * 100  # 100 x 10 frames would fit in one batch of 10000 frames
    batches = LengthBucketSampler(lengths, max_frames=10_000, max_batch_size=16).batches()
    assert sorted(len(b) for b in batches) == [4] + [16] * 6


def test_sampler_same_epoch_same_batches_different_epoch_differs():
    lengths = random_lengths()
    a = LengthBucketSampler(lengths, max_frames=6000, seed=1)
    b = LengthBucketSampler(lengths, max_frames=6000, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    assert a.batches() == b.batches()
    assert a.batches() == a.batches()
    b.set_epoch(5)
    assert a.batches() != b.batches()
    other_seed = LengthBucketSampler(lengths, max_frames=6000, seed=2)
    other_seed.set_epoch(4)
    assert other_seed.batches() != a.batches()


def test_sampler_without_shuffle_is_sorted_and_epoch_independent():
    lengths = [30, 10, 20, 10, 40]
    sampler = LengthBucketSampler(lengths, max_frames=40, shuffle=False)
    # sorted (stable): 1, 3, 2, 0, 4 -> [1, 3] (20 <= 40), then 2 alone would make 20*3 > 40
    assert sampler.batches() == [[1, 3], [2], [0], [4]]
    sampler.set_epoch(7)
    assert sampler.batches() == [[1, 3], [2], [0], [4]]


def test_sampler_padding_much_lower_than_random_batching():
    lengths = random_lengths(n=800, seed=3)
    sampler = LengthBucketSampler(lengths, max_frames=8000, seed=0)
    bucketed = padding_waste(sampler.batches(), lengths)
    # random batching with the same budget: a random order, filled greedily under max_frames
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    random_batches, current = [], []
    for i in order:
        if current and max(lengths[j] for j in current + [i]) * (len(current) + 1) > 8000:
            random_batches.append(current)
            current = []
        current.append(i)
    random_batches.append(current)
    shuffled = padding_waste(random_batches, lengths)
    assert bucketed < 0.15
    assert bucketed < shuffled / 3


def test_sampler_max_frames_smaller_than_longest_raises():
    with pytest.raises(ASRError, match="500"):
        LengthBucketSampler([100, 500, 200], max_frames=499)


def test_sampler_as_dataloader_batch_sampler():
    dataset, *_ = make_dataset()
    sampler = LengthBucketSampler(dataset.num_frames, max_frames=200, shuffle=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    batches = list(loader)
    # sorted 60, 90, 120 frames: 90 * 2 = 180 fits in 200, 120 * 3 does not
    assert [b.ids for b in batches] == [["u2", "u1"], ["u0"]]
    assert batches[0].feats.shape == (2, 90, 8)
    assert batches[0].feat_lens.tolist() == [60, 90]
    assert batches[1].feats.shape == (1, 120, 8)
