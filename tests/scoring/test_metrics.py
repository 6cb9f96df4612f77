"""The four scores of docs/OVERVIEW.md ("Scores"), checked against hand-computed values.

`norm(s) = s.strip().lower()`; distances are Levenshtein per code point with unit costs.
Every expected number below is worked out in the comment next to it, not taken from the code.
"""

from __future__ import annotations

import random

import pytest

from finetune_lab.scoring import Scores, score, score_batch

ALL_NONE = (None, None, None, None)


def approx_scores(exact, cer, ratio, overlap):
    return (
        exact,
        pytest.approx(cer, abs=1e-12),
        pytest.approx(ratio, abs=1e-12),
        pytest.approx(overlap, abs=1e-12),
    )


def check(prediction, truth, exact, cer, ratio, overlap):
    got = score(prediction, truth)
    assert isinstance(got, Scores)
    assert tuple(got) == approx_scores(exact, cer, ratio, overlap), (prediction, truth, got)


# --- basic shape -------------------------------------------------------------------------


def test_scores_is_a_named_tuple_with_the_four_fields():
    got = score("a", "a")
    assert got._fields == ("exact_match", "char_error_rate", "length_ratio", "word_overlap")
    assert got.exact_match == 1.0
    assert got.char_error_rate == 0.0
    assert got.length_ratio == 1.0
    assert got.word_overlap == 1.0
    assert all(isinstance(v, float) for v in got)


def test_identical_strings_score_perfectly():
    check("The quick brown fox", "The quick brown fox", 1.0, 0.0, 1.0, 1.0)


def test_classic_kitten_sitting():
    # distance("kitten", "sitting") = 3 (k->s, e->i, +g); len(truth) = 7
    # length_ratio = 6 / 7; the single words differ -> overlap 0/1
    check("kitten", "sitting", 0.0, 3 / 7, 6 / 7, 0.0)


# --- normalisation -----------------------------------------------------------------------


def test_leading_trailing_whitespace_and_case_are_normalised():
    check("  Hello World \n", "hello world", 1.0, 0.0, 1.0, 1.0)
    check("HELLO", "\thello\r\n", 1.0, 0.0, 1.0, 1.0)


def test_unicode_whitespace_is_stripped():
    # str.strip() removes U+3000 (ideographic space) and U+00A0 (no-break space)
    check("\u3000hello\u00a0", "hello", 1.0, 0.0, 1.0, 1.0)


def test_inner_whitespace_is_not_collapsed_for_exact_match_and_cer():
    # norm only strips the ends: "hello   world" (13) vs "hello world" (11): 2 deletions
    # -> exact 0, CER 2/11, ratio 13/11; split() ignores runs of spaces -> overlap 2/2
    check("hello   world", "hello world", 0.0, 2 / 11, 13 / 11, 1.0)


def test_tabs_and_newlines_count_as_characters_but_split_words():
    # "a\tb\nc" vs "a b c": two substitutions over 5 code points; same word sets
    check("a\tb\nc", "a b c", 0.0, 2 / 5, 1.0, 1.0)


def test_lowercasing_that_changes_length():
    # "İstanbul".lower() == "i̇stanbul": 9 code points (i + U+0307 + "stanbul")
    # "istanbul" (8) needs one insertion -> CER 1/9, ratio 8/9; words differ -> 0
    assert len("İstanbul".lower()) == 9
    check("istanbul", "İstanbul", 0.0, 1 / 9, 8 / 9, 0.0)


def test_lower_is_not_casefold():
    # "STRASSE" -> "strasse" (7) vs "straße" (6): "sse" -> "ße" = 1 substitution + 1 deletion
    check("STRASSE", "Straße", 0.0, 2 / 6, 7 / 6, 0.0)


# --- Unicode: distance per code point -----------------------------------------------------


def test_combining_character_is_a_separate_code_point():
    # prediction "cafe" + U+0301 (5 code points), truth "café" with precomposed U+00E9 (4)
    # "e\u0301" -> "é": one substitution + one deletion = 2 -> CER 2/4; ratio 5/4
    check("cafe\u0301", "caf\u00e9", 0.0, 2 / 4, 5 / 4, 0.0)


def test_emoji_single_code_point_substitution():
    # "ok 👎" vs "ok 👍": 4 code points each, 1 substitution -> CER 1/4, ratio 1
    # words {"ok", "👎"} ∩ {"ok", "👍"} = {"ok"} -> 1/2
    check("ok 👎", "ok 👍", 0.0, 1 / 4, 1.0, 1 / 2)


def test_emoji_zwj_sequence_counts_every_code_point():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man ZWJ woman ZWJ girl: 5 code points
    assert len(family) == 5
    # "👨" vs family: 4 insertions -> CER 4/5, ratio 1/5
    check("\U0001f468", family, 0.0, 4 / 5, 1 / 5, 0.0)


def test_emoji_skin_tone_modifier():
    # "👍🏽" is 2 code points, "👍" is 1: distance 1 over 1 -> CER 1.0, ratio 2.0
    check("\U0001f44d\U0001f3fd", "\U0001f44d", 0.0, 1.0, 2.0, 0.0)


def test_cjk_per_character():
    # "我喜欢狗" vs "我喜欢猫": 4 code points, 1 substitution -> CER 1/4, ratio 1;
    # no spaces, so each side is one word, different -> overlap 0
    check("我喜欢狗", "我喜欢猫", 0.0, 1 / 4, 1.0, 0.0)
    check("我喜欢猫", "我喜欢猫", 1.0, 0.0, 1.0, 1.0)


def test_cjk_with_spaces_word_overlap():
    # words {"你好", "世界"} vs {"你好", "朋友"}: 1 shared of 2 prediction words
    # distance: "世界" -> "朋友" = 2 substitutions over 5 code points
    check("你好 世界", "你好 朋友", 0.0, 2 / 5, 1.0, 1 / 2)


# --- empty and missing -------------------------------------------------------------------


@pytest.mark.parametrize("truth", [None, ""])
@pytest.mark.parametrize("prediction", ["", "anything", "  "])
def test_no_ground_truth_gives_all_none(prediction, truth):
    assert tuple(score(prediction, truth)) == ALL_NONE


@pytest.mark.parametrize("truth", [" ", "   ", "\n\t", "\u3000"])
def test_whitespace_only_ground_truth(truth):
    # docs/OVERVIEW.md: scores are skipped only when ground_truth is not a non-empty string; a
    # whitespace-only truth is non-empty, and the docs define that case explicitly:
    # "If norm(truth) is empty: CER 0.0 when norm(pred) is empty, else 1.0";
    # "length_ratio 0.0 when norm(truth) is empty"; word_overlap 0.0 (no shared words or
    # no prediction words).
    check("", truth, 1.0, 0.0, 0.0, 0.0)
    check("  ", truth, 1.0, 0.0, 0.0, 0.0)
    check("x", truth, 0.0, 1.0, 0.0, 0.0)
    check("some words here", truth, 0.0, 1.0, 0.0, 0.0)


def test_empty_prediction():
    # distance("", "abc") = 3 -> CER 3/3 = 1.0; ratio 0/3; no prediction words -> 0.0
    check("", "abc", 0.0, 1.0, 0.0, 0.0)


def test_whitespace_only_prediction_is_empty_after_norm():
    check(" \n\t ", "two words", 0.0, 1.0, 0.0, 0.0)


# --- CER cap and length ratio --------------------------------------------------------------


def test_cer_is_capped_at_one():
    # distance("abcdefghij", "x") = 10 (9 deletions + 1 substitution) -> 10/1 capped at 1.0
    # length_ratio is NOT capped: 10/1
    check("abcdefghij", "x", 0.0, 1.0, 10.0, 0.0)


def test_cer_exactly_one_without_cap():
    # "ab" vs "cd": 2 substitutions over 2 -> exactly 1.0
    check("ab", "cd", 0.0, 1.0, 1.0, 0.0)


def test_cer_just_over_one_is_capped():
    # "abc" vs "xy": 3 edits over 2 = 1.5 -> 1.0; ratio 3/2
    check("abc", "xy", 0.0, 1.0, 1.5, 0.0)


def test_length_ratio_above_and_below_one():
    # "aaaa" vs "aa": 2 deletions over 2 -> CER 1.0; ratio 4/2; one word each, different
    check("aaaa", "aa", 0.0, 1.0, 2.0, 0.0)
    # "a" vs "aaaa": 3 insertions over 4 -> CER 3/4; ratio 1/4
    check("a", "aaaa", 0.0, 3 / 4, 1 / 4, 0.0)


def test_length_ratio_uses_normalised_lengths():
    # norm("  ABC  ") = "abc" (3); norm("abcdef") = 6 -> ratio 0.5, CER 3/6
    check("  ABC  ", "abcdef", 0.0, 3 / 6, 0.5, 0.0)


# --- word overlap ----------------------------------------------------------------------------


def test_word_overlap_uses_sets_for_repeated_prediction_words():
    # pred set {"the", "cat"}, truth set {"the", "dog"} -> 1 / 2 (not 3/4 counting repeats)
    got = score("the the the cat", "the dog")
    assert got.word_overlap == pytest.approx(1 / 2)


def test_word_overlap_repeated_single_word():
    # pred set {"a"} ⊂ truth set {"a", "b", "c"} -> 1 / 1
    assert score("a a a", "a b c").word_overlap == pytest.approx(1.0)


def test_word_overlap_repeated_truth_words():
    # pred set {"x", "y"}, truth set {"y"} -> 1 / 2
    assert score("x y", "y y y").word_overlap == pytest.approx(1 / 2)


def test_word_overlap_is_normalised_for_case():
    # lowercase applies to words too: {"hello", "world"} both shared
    assert score("HELLO World", "hello world").word_overlap == pytest.approx(1.0)


def test_word_overlap_denominator_is_prediction_words():
    # pred {"a"} vs truth {"a", "b", "c", "d"}: 1/1, not 1/4
    assert score("a", "a b c d").word_overlap == pytest.approx(1.0)
    # pred {"a", "b", "c", "d"} vs truth {"a"}: 1/4
    assert score("a b c d", "a").word_overlap == pytest.approx(1 / 4)


def test_word_overlap_punctuation_is_part_of_the_word():
    # "hello," != "hello"
    assert score("hello, world", "hello world").word_overlap == pytest.approx(1 / 2)


def test_prediction_with_no_words_has_zero_overlap():
    assert score("", "a b").word_overlap == 0.0
    assert score("   \n ", "a b").word_overlap == 0.0


# --- cross-check against an independent implementation of the formulas ---------------------


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _reference(prediction: str, truth: str | None):
    if not isinstance(truth, str) or truth == "":
        return ALL_NONE
    p, t = prediction.strip().lower(), truth.strip().lower()
    exact = 1.0 if p == t else 0.0
    if t:
        cer = min(1.0, _levenshtein(p, t) / len(t))
        ratio = len(p) / len(t)
    else:
        cer = 0.0 if not p else 1.0
        ratio = 0.0
    pw = set(p.split())
    overlap = len(pw & set(t.split())) / len(pw) if pw else 0.0
    return (exact, cer, ratio, overlap)


def test_random_strings_match_reference_implementation():
    rng = random.Random(20240601)
    alphabet = [*"abcAB ", "é", "e\u0301", "\U0001f44d", "猫", "\t", "İ", "ß", "\u3000"]
    for _ in range(500):
        pred = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        truth = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        got = tuple(score(pred, truth))
        want = _reference(pred, truth)
        if want == ALL_NONE:
            assert got == ALL_NONE
        else:
            assert got == approx_scores(*want), (pred, truth)


def test_score_batch_matches_score():
    pairs = [("a", "a"), ("b", None), ("", ""), ("Kitten", "sitting"), ("x", "  ")]
    assert score_batch(pairs) == [score(p, t) for p, t in pairs]
    assert score_batch([]) == []
