"""Shallow fusion of a recurrent LM (optionally with a word n-gram) into flashlight's CTC beam search.

flashlight-text asks its LM one question at a time, from C++: "the score of unit i after the
history held in this LM state". `FusedLM` answers as a subclass of flashlight's LM (the class
torchaudio's custom-LM interface, CTCDecoderLM, wraps; no torch here, so the exported runtime fuses
too), and keeps that affordable:

- Each decoder LM state is a node of a prefix tree (`state.child(i)` is the same object for the same
  history), so hypotheses that share a history share one recurrent state: cached per node.
- Asking for a child does not run the network. A node's next-unit distribution is computed only
  when a hypothesis ending there is extended, and then for every node still waiting, in one batched
  step (the LM work of one frame is one matrix product, not one per hypothesis). The step is an
  object given in: initial_states(count) and step(tokens (N,), states (N, layers, parts, H)) ->
  (log-probs (N, V), new states), numpy in and out; the one network step asr.rnnlm.RNNLM.step,
  run by torch (asr.rnnlm.TorchStep) or, in the exported runtime, by onnxruntime as its export
  rnnlm.onnx (asr.runtime.OnnxStep).
  batch=False computes each node alone when it is first extended instead: fewer network steps
  (pruned hypotheses are never run) but one call each; on AN4 the batched form was faster for a
  2 x 256 word LSTM (1.8x, beam 50) and about even for a character LM.
- flashlight asks the same question again at every frame a hypothesis survives (the same word
  after the same history): each answer is kept, keyed by (state, unit), so a repeat is one
  dictionary look-up. A distribution is kept as a numpy row, so a new question is an index.

Scores: weight * ln P_rnn (+ ngram_weight * log10 P_ngram, the unit KenLM and the n-gram-only
decoder use), returned with flashlight's own lm_weight set to 1. A character LM decodes without a
lexicon, so the per-word bonus (word_score) is added here, at each word end (space or the end).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flashlight.lib.text.decoder import LM, LMState

from asr.rnnlm_config import EOS_ID


class _Node:
    """What FusedLM knows of one LM state: how to reach it, and once computed, what follows it."""

    __slots__ = ("parent", "token", "state", "log_probs", "ngram_state")

    def __init__(self, parent: _Node | None, token: int, ngram_state=None) -> None:
        self.parent = parent  # the node this one extends (None for the root)
        self.token = token  # the LM unit fed to reach this node from its parent
        self.state: np.ndarray | None = None  # recurrent state after `token`: (layers, parts, H)
        self.log_probs: np.ndarray | None = None  # (V,) natural-log next-unit probabilities
        self.ngram_state = ngram_state


class FusedLM(LM):
    """flashlight LM over decoder unit ids (words of the word dictionary, or acoustic tokens).

    step: the recurrent LM's network step (see the module docstring).
    to_lm[i] is the recurrent LM's id for decoder unit i (its UNK where it has none).
    word_ends: decoder unit ids that end a word (the space of a character LM); each, and the end
    of the sentence, earns word_score. ngram: a flashlight KenLM over the same unit ids, or None.
    """

    def __init__(self, step, to_lm: Sequence[int], weight: float, ngram=None, ngram_weight: float = 0.0,
                 word_ends: Sequence[int] = (), word_score: float = 0.0, batch: bool = True) -> None:
        LM.__init__(self)
        self.to_lm, self.weight = list(to_lm), weight
        self.step = step
        self.batch = batch
        self.ngram, self.ngram_weight = ngram, ngram_weight
        self.bonus = {i: word_score for i in word_ends}
        self.end_bonus = word_score if word_ends else 0.0
        self.nodes: dict[LMState, _Node] = {}
        self.answers: dict[tuple[LMState, int], tuple[LMState, float]] = {}
        self.pending: list[_Node] = []
        self.steps = self.batches = 0  # network steps run and batches they ran in, for measurement

    def start(self, start_with_nothing: bool = False) -> LMState:
        root = LMState()
        node = _Node(None, EOS_ID, self.ngram.start(start_with_nothing) if self.ngram is not None else None)
        self.nodes, self.pending, self.answers = {root: node}, [node], {}
        return root

    def score(self, state: LMState, unit: int) -> tuple[LMState, float]:
        answer = self.answers.get((state, unit))
        if answer is not None:
            return answer
        node = self.nodes[state]
        if node.log_probs is None:
            self._compute(node)
        child = state.child(unit)
        child_node = self.nodes.get(child)
        ngram_score = 0.0
        if self.ngram is not None:
            ngram_next, ngram_score = self.ngram.score(node.ngram_state, unit)
        if child_node is None:
            child_node = _Node(node, self.to_lm[unit], ngram_next if self.ngram is not None else None)
            self.nodes[child] = child_node
            if self.batch:
                self.pending.append(child_node)
        score = self.weight * float(node.log_probs[child_node.token]) + self.bonus.get(unit, 0.0)
        answer = self.answers[state, unit] = (child, score + self.ngram_weight * ngram_score)
        return answer

    def finish(self, state: LMState) -> tuple[LMState, float]:
        node = self.nodes[state]
        if node.log_probs is None:
            self._compute(node)
        score = self.weight * float(node.log_probs[EOS_ID]) + self.end_bonus
        if self.ngram is not None:
            score += self.ngram_weight * self.ngram.finish(node.ngram_state)[1]
        return state, score

    def _compute(self, node: _Node) -> None:
        """Compute node's distribution: alone (demand mode), or in one batched network step with
        every node created since the last batch (batch mode)."""
        if self.batch:
            pending = [n for n in self.pending if n.log_probs is None]
            self.pending = []
        else:
            pending = [node]
        tokens = np.array([n.token for n in pending])
        zero = self.step.initial_states(1)[0]
        states = np.stack([n.parent.state if n.parent is not None else zero for n in pending])  # (N, layers, parts, H)
        rows, new_states = self.step(tokens, states)
        for node, log_probs, state in zip(pending, rows, new_states):
            node.log_probs, node.state = log_probs, state
        self.steps += len(pending)
        self.batches += 1
