"""`MODEL_CARD.md`, rendered from the machine-readable card."""

from __future__ import annotations


def _md_header(card: dict) -> list[str]:
    L = [
        f"# Model card: {card['name']} {card['spec']['version']}",
        "",
        f"Shipped file: `{card['model_file']}` ({card['shipped_variant']}; {card['shipped_reason']}).",
        "",
        "| file | bytes | SHA-256 |",
        "|---|---|---|",
    ]
    for f, h in card["files"].items():
        L.append(f"| `{f}` | {card['sizes_bytes'][f]} | `{h}` |")
    return L


def _md_what(card: dict) -> list[str]:
    L: list[str] = []
    a = card["architecture"]
    L += [
        "",
        "## What it does",
        "Input: one customer utterance (8 kHz telephone or 16 kHz headset audio). Output: one of "
        f"{', '.join(card['spec']['labels'])} (calm counts as neutral) with a calibrated confidence, "
        "`uncertain` flag, intensity, arousal and valence.",
        "",
        f"Architecture: {a['type']}: {a['members']} MLPs (ReLU, hidden {a['hidden']}), {a['linear_member']}; "
        f"{a['parameters']} parameters; {a['inputs']}; heads: {a['heads']}.",
        "",
        "Features (runtime frontend `appliance.features`, computed by `appliance.emotion.utterance_features`): "
        "mean/std/delta-std of 40 log-mel bands and 13 MFCCs over active frames (within 30 dB of the loudest), "
        "frame-energy statistics, all `features.functionals`, MFCC/mel statistics over voiced (`yin_pitch`) and unvoiced "
        "frames, MFCC/pitch/energy means per third of the utterance, pitch range and energy shape. "
        + (
            f"Speech embedding (`appliance.emotion.embedding`, card section `embedding`): mean and standard "
            f"deviation of the bundled Whisper tiny.en encoder's frames over the utterance ({card['spec']['embedding']['dim']} "
            f"numbers), encoder window at least {card['spec']['embedding']['min_window_s']} s, encoder pinned by SHA-256. "
            if card["spec"].get("embedding")
            else ""
        )
        + "Causal per-call normalisation: utterance k is "
        "z-scored with the running mean/variance of utterances before it in the same call, shrunk towards a "
        "training-set prior (mean prior weight 4 utterances, variance 12), per sample rate.",
        "",
        "Outputs:",
    ]
    for k, v in card["outputs"].items():
        L.append(f"- {k}: {v}")
    L.append(f"- circumplex (arousal, valence): {card['spec']['circumplex']}")
    return L


def _md_data(card: dict) -> list[str]:
    L: list[str] = []
    L += [
        "",
        "## Training data and licence",
        f"{card['training']['data']}. Licence: {card['training']['data_licence']}.",
        "",
        card["licence_note"],
        "",
        f"Channel simulation during training: {', '.join(card['training']['channel_variants'])} "
        "(clean 16 kHz; headset gain/noise; telephone 300-3400 Hz, 8 kHz, line noise, gain, G.711 mu-law; "
        "speed-perturbed headset/telephone copies, playback speed 0.90-1.10 fixed per speaker, as extra pseudo-speakers).",
    ]
    return L


def _md_cv(card: dict, s: dict) -> list[str]:
    L: list[str] = []
    L += [
        "",
        "## Evaluation (speakers held out)",
        card["cv"]["protocol"] + ".",
        "",
        "| fold | held-out speakers | 16k UAR | 16k arousal UAR | phone UAR | phone arousal UAR | 16k UAR int8 | phone UAR int8 | 16k arousal int8 | phone arousal int8 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in card["cv"]["folds"]:
        L.append(
            f"| {f['fold']} | {', '.join(x.split('_')[-1] for x in f['speakers'])} | {f['16k']['uar']:.3f} | "
            f"{f['16k']['arousal_uar']:.3f} | {f['phone']['uar']:.3f} | {f['phone']['arousal_uar']:.3f} | "
            f"{f['16k']['uar_int8']:.3f} | {f['phone']['uar_int8']:.3f} | "
            f"{f['16k'].get('arousal_uar_int8', float('nan')):.3f} | {f['phone'].get('arousal_uar_int8', float('nan')):.3f} |"
        )
    L.append(
        f"| all (pooled) | | {s['16k']['uar']:.3f} | {s['16k']['arousal_uar']:.3f} | {s['phone']['uar']:.3f} | "
        f"{s['phone']['arousal_uar']:.3f} | {s['16k']['uar_int8']:.3f} | {s['phone']['uar_int8']:.3f} | "
        f"{s['16k'].get('arousal_uar_int8', float('nan')):.3f} | {s['phone'].get('arousal_uar_int8', float('nan')):.3f} |"
    )
    if "arousal_threshold" in s:
        L += [
            "",
            f"Arousal UAR (binary high/low): {card['outputs']['arousal']}. In the CV each held-out fold is "
            "decided at the threshold chosen on the other folds' out-of-fold scores (cross-fitted); the shipped "
            f"threshold {s['arousal_threshold']:+.3f} is chosen on all of them. Other arousal scores, decided at 0 "
            f"(16k / phone): class sum {s['16k']['arousal_uar_class_sum']:.3f} / {s['phone']['arousal_uar_class_sum']:.3f}, "
            f"circumplex {s['16k']['arousal_uar_circumplex']:.3f} / {s['phone']['arousal_uar_circumplex']:.3f}, "
            f"arousal head {s['16k']['arousal_uar_head']:.3f} / {s['phone']['arousal_uar_head']:.3f}.",
        ]
    L += [
        "",
        f"First utterance of a call (prior only): 16k UAR {s['16k']['uar_first_utterance']:.3f}, phone "
        f"{s['phone']['uar_first_utterance']:.3f}; later utterances: 16k {s['16k']['uar_later_utterances']:.3f}, "
        f"phone {s['phone']['uar_later_utterances']:.3f}.",
        "",
        f"Calibration: temperature T = {s['temperature']:.3f}; ECE (10 bins) before -> after: 16k "
        f"{s['16k']['ece_before']:.3f} -> {s['16k']['ece_after']:.3f}, phone {s['phone']['ece_before']:.3f} -> "
        f"{s['phone']['ece_after']:.3f}. Uncertain (confidence < {card['spec']['uncertain_threshold']}): "
        f"{100 * s['16k']['uncertain_fraction']:.0f}% of 16k, {100 * s['phone']['uncertain_fraction']:.0f}% of phone "
        f"utterances; accuracy on the rest {s['16k']['accuracy_when_certain']:.3f} / {s['phone']['accuracy_when_certain']:.3f}.",
    ]
    return L


def _md_quantisation(card: dict) -> list[str]:
    L: list[str] = []
    q = card["quantisation"]
    L += [
        "",
        "## fp32 vs int8 (latency per 1 s window, median, 1 thread)",
        "",
        "| | 16k UAR | phone UAR | 16k total ms | 16k ONNX ms | phone total ms | phone ONNX ms | bytes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in ("fp32", "int8"):
        d = q[v]
        L.append(
            f"| {v} | {d['uar']['16k']:.3f} | {d['uar']['phone']:.3f} | {d['latency_1s_window']['16k']['total_ms']} | "
            f"{d['latency_1s_window']['16k']['onnx_ms']} | {d['latency_1s_window']['phone']['total_ms']} | "
            f"{d['latency_1s_window']['phone']['onnx_ms']} | {d['bytes']} |"
        )
    L += ["", q["method"] + ". " + q["latency_note"] + "."]
    return L


def _md_real_calls(card: dict) -> list[str]:
    """How the model behaves on real calls: the abstention rule, the deployment prior, the
    out-of-distribution pull, the neutral anchors, and the realism benchmark's table."""
    sp = card["spec"]
    if not sp.get("deploy_prior"):
        return []
    ab, ood = sp.get("abstain") or {}, sp.get("ood") or {}
    prior = ", ".join(f"{k} {v:g}" for k, v in zip(sp["labels"], sp["deploy_prior"], strict=True))
    L = [
        "",
        "## On real calls",
        f"- Abstention: an utterance shorter than {ab.get('min_duration_s')} s gets `uncertain: true`; so does "
        f"one whose transcript is a backchannel (at most {ab.get('backchannel_max_words')} words, all from "
        "`spec.abstain.backchannel_words`: mm-hmm, okay, yeah, thank you, bye, hello, ...), applied by the "
        "pipeline when the text arrives (`appliance.emotion.policy.abstain_on_transcript`). Label and "
        "probabilities stay for diagnostics; consumers ignore uncertain labels.",
        f"- Deployment prior (logit adjustment from the balanced training prior): {prior}. A site sets its "
        "own with `[emotion] prior` (7 numbers, label order). The CV figures above are without it (UAR is "
        "a balanced measure).",
        f"- Out-of-distribution: distance of the causal z-scores to the training data ({ood.get('method')}, "
        f"{ood.get('k')} components, fitted at training time, stored in `spec.ood`); from its held-out median "
        f"({ood.get('q50', 0):.2f}) the probabilities are pulled towards the deployment prior, fully at its "
        f"held-out 99th percentile ({ood.get('q99', 0):.2f}), above which the result is uncertain.",
    ]
    an = card["training"].get("anchors")
    if an:
        L.append(
            f"- Neutral anchors: {an['utterances']} utterances of calm, non-acted speech from "
            f"{len(an['recordings'])} recordings (listed in the card; left out of the realism benchmark) "
            "trained as neutral beside RAVDESS; kept out of the CV metrics."
        )
    a = (card["cv"]["summary"] or {}).get("anchors") or {}
    if a:
        L.append(
            "- Held-out anchors in the CV (16k / phone): labelled neutral "
            f"{a['16k']['neutral']:.3f} / {a['phone']['neutral']:.3f}, confident non-neutral "
            f"{a['16k']['confident_non_neutral']:.3f} / {a['phone']['confident_non_neutral']:.3f}."
        )
    if card.get("realism"):
        L += ["", "Realism benchmark (`appliance bench realism`, customer channel):", ""]
        L += card["realism"]["table"].rstrip("\n").split("\n")
    return L


def _md_limits(card: dict) -> list[str]:
    L: list[str] = []
    L += [
        "",
        "## Limits",
        "- Acted speech (two sentences, 20 North-American actors) is the only emotional training data; "
        "calm non-acted speech anchors only the neutral class. No real-call emotion labels exist here, so "
        "accuracy on real emotional customers is unmeasured: the realism benchmark shows the model stays "
        "quiet on calm speech, not that it is right on upset callers.",
        "- The first utterance of a call is scored with the training-set prior only; accuracy improves as the call's "
        "statistics accumulate.",
        "- Emotion recognition of employees is restricted in the EU (AI Act): the appliance scores the customer channel only.",
        "",
        f"Report plot: {card['report_plot']}. Created {card['created']}; training took {card['training']['duration_s']} s.",
    ]
    return L


def render_card_md(card: dict) -> str:
    """`MODEL_CARD.md`: the card for people."""
    s = card["cv"]["summary"]
    L = _md_header(card) + _md_what(card) + _md_data(card)
    if s:
        L += _md_cv(card, s) + _md_quantisation(card)
    L += _md_real_calls(card)
    return "\n".join(L + _md_limits(card)) + "\n"
