"""Tokenization that holds for three tokenizer families, each built and trained locally:
a SentencePiece-style Metaspace Unigram (Llama-2), a Metaspace BPE (Mistral) and a byte-level BPE (GPT-2,
SmolLM2). Answers are the tokens the model sees after the prompt, truncation keeps BOS, and the
evaluator equals full-logit scoring."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from helpers import CHOICE_WORDS, CUES, FILLER, LABELS, build_tiny_llama
from relora.lab.perf.reference import reference_evaluate
from relora.core.model.data import TaskFormat, load_task, read_jsonl, tokenize
from relora.core.model.models import load_model, load_tokenizer
from relora.core.model.scoring import evaluate

FAMILIES = ("metaspace-unigram", "metaspace-bpe", "byte-level-bpe")
TEMPLATE = "{text}\nAnswer:"


def corpus() -> list[str]:
    rng = random.Random(0)
    words = FILLER + [w for ws in CUES.values() for w in ws] + LABELS + [w for p in CHOICE_WORDS for w in p.split()]
    return [" ".join(rng.sample(words, 6)) + "\nAnswer: " + rng.choice(LABELS) for _ in range(400)]


def build_family(family: str, path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    if family == "metaspace-unigram":
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=specials, unk_token="<unk>")
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>" if family == "metaspace-bpe" else None))
        alphabet = pre_tokenizers.ByteLevel.alphabet() if family == "byte-level-bpe" else []
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=alphabet)
    if family == "metaspace-unigram":  # Llama-2's tokenizer.json: a prefix and spaces as ▁, no pre-tokenizer
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    elif family == "metaspace-bpe":  # Mistral's: a Metaspace pre-tokenizer
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(path)


@pytest.fixture(scope="module", params=FAMILIES)
def family_base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp(request.param)
    build_family(request.param, path)
    build_tiny_llama(path, len(load_tokenizer(path)))
    return path


def test_answers_are_the_tokens_seen_after_the_prompt(family_base: Path, world) -> None:
    tok = load_tokenizer(family_base)
    for split in (world.train, world.mc_val):
        examples = read_jsonl(split)[:20]
        labels = sorted({ex.label for ex in examples if ex.choices is None})
        for ex, item in zip(examples, tokenize(examples, labels, tok, TEMPLATE, 256), strict=True):
            options = list(ex.choices) if ex.choices is not None else labels
            for option, answer in zip(options, item.candidates, strict=True):
                full = tok(TEMPLATE.format(text=ex.text) + " " + option)["input_ids"]
                assert list(item.prompt + answer) == full  # exactly what the model reads in context
                assert tok.convert_ids_to_tokens(answer[0]) not in ("▁", "Ġ")  # no stray word-prefix token


def test_truncation_keeps_bos_and_the_end_of_the_prompt(family_base: Path, world) -> None:
    tok = load_tokenizer(family_base)
    examples = read_jsonl(world.train)[:10]
    full = tokenize(examples, LABELS, tok, TEMPLATE, 256)
    cut = tokenize(examples, LABELS, tok, TEMPLATE, 9)
    for long, short in zip(full, cut, strict=True):
        assert short.prompt[0] == tok.bos_token_id and len(short.prompt) == min(9, len(long.prompt))
        assert short.prompt[1:] == long.prompt[len(long.prompt) - len(short.prompt) + 1 :]
        assert short.candidates == long.candidates


@pytest.mark.parametrize("task", ["single", "multiple-choice"])
def test_evaluator_equals_full_logit_scoring(family_base: Path, world, task: str) -> None:
    tok = load_tokenizer(family_base)
    train, val = (world.train, world.val) if task == "single" else (world.mc_train, world.mc_val)
    items, _ = load_task(str(train), str(val), None, tok, TaskFormat(template=TEMPLATE, max_length=64))
    model = load_model(family_base)
    ref = reference_evaluate(model, items["val"], tok.pad_token_id, batch_size=4)
    res = evaluate(model, items["val"], tok.pad_token_id, batch_size=5)
    assert abs(res.loss - ref.loss) < 1e-5 and res.correct == ref.correct
    assert res.accuracy_norm == ref.accuracy_norm
