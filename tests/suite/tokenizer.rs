//! Tokenizer tests: training byte-level BPE on a small synthetic corpus, exact round trips,
//! tokenizer.json save/load, special ids, offsets, word ids, loading GPT-2- and BERT-format
//! files, and errors on malformed files.

use crate::common::empty_dir;

use serde_json::json;
use tunelab::autodiff::IGNORE_INDEX;
use tunelab::data::batch::{align_word_labels, pad_with_labels, PadSide};
use tunelab::data::tokenizer::{Preset, Tokenizer};
use tunelab::Error;

/// 200 sentences: 8 subjects × 5 verbs × 5 objects, with some non-ASCII text.
fn corpus() -> Vec<String> {
    let subjects = [
        "the cat",
        "a dog",
        "my friend Alice",
        "the old fisherman",
        "our teacher",
        "Bob",
        "the little bird",
        "a tired student",
    ];
    let verbs = ["sees", "likes", "paints", "visits", "remembers"];
    let objects = [
        "the river",
        "a red house",
        "the market in Hà Nội",
        "an old book",
        "the café by the sea",
    ];
    let mut out = Vec::new();
    for s in subjects {
        for v in verbs {
            for o in objects {
                out.push(format!("{s} {v} {o}."));
            }
        }
    }
    assert_eq!(out.len(), 200);
    out
}

fn trained(preset: Preset) -> Tokenizer {
    Tokenizer::train_bpe(&corpus(), 400, preset).expect("training succeeds")
}

const TEXTS: [&str; 6] = [
    "the cat sees the river.",
    "Bob paints an old book.",
    "  two leading spaces,  inner  doubles and a trailing space ",
    "lines\nwith\ttabs\r\nand Windows endings",
    "unseen words: zebra quixotic 42 = 6 * 7!",
    "non-ASCII: café, Hà Nội, 日本語, emoji 🦀",
];

#[test]
fn tokenizer_round_trip() {
    for preset in [Preset::Gpt, Preset::Bert] {
        let tok = trained(preset);
        for text in TEXTS {
            for add_special in [false, true] {
                let ids = tok.encode(text, add_special).unwrap();
                assert_eq!(tok.decode(&ids, true).unwrap(), text, "{preset:?} {text:?}");
            }
        }
    }
}

#[test]
fn tokenizer_training_learns_merges() {
    let tok = trained(Preset::Gpt);
    // 2 specials + 256 bytes + merges, capped at the requested size.
    assert!(
        tok.vocab_size() > 258 && tok.vocab_size() <= 400,
        "{}",
        tok.vocab_size()
    );
    // A frequent word of the corpus is one token, with its leading space.
    let the = tok.token_to_id("Ġthe").expect("Ġthe learned");
    assert_eq!(tok.encode(" the", false).unwrap(), vec![the]);
    // Merges compress the corpus well below one token per byte.
    let text = "the old fisherman remembers the market in Hà Nội.";
    let n = tok.encode(text, false).unwrap().len();
    assert!(n * 3 < text.len(), "{n} tokens for {} bytes", text.len());
    // Training is deterministic.
    let again = trained(Preset::Gpt);
    for text in TEXTS {
        assert_eq!(
            tok.encode(text, false).unwrap(),
            again.encode(text, false).unwrap()
        );
    }
}

#[test]
fn tokenizer_gpt_specials_have_first_ids() {
    let tok = trained(Preset::Gpt);
    assert_eq!(tok.preset(), Preset::Gpt);
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(tok.token_to_id("<pad>"), Some(1));
    assert_eq!(tok.eos_id(), Some(0));
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(tok.pad_id(), Some(1));
    assert_eq!(
        (tok.cls_id(), tok.sep_id(), tok.mask_id()),
        (None, None, None)
    );
    assert_eq!(tok.id_to_token(0).as_deref(), Some("<|endoftext|>"));
    // GPT adds nothing around the text.
    let text = "the cat likes the river.";
    assert_eq!(
        tok.encode(text, true).unwrap(),
        tok.encode(text, false).unwrap()
    );
    // A special token written in the text is one id, never split into bytes.
    let ids = tok.encode("the cat.<|endoftext|>", false).unwrap();
    assert_eq!(ids.last(), Some(&0));
    assert_eq!(ids.iter().filter(|&&i| i == 0).count(), 1);
    assert_eq!(tok.decode(&ids, false).unwrap(), "the cat.<|endoftext|>");
    assert_eq!(tok.decode(&ids, true).unwrap(), "the cat.");
}

#[test]
fn tokenizer_bert_specials_wrap_input() {
    let tok = trained(Preset::Bert);
    assert_eq!(tok.preset(), Preset::Bert);
    for (i, t) in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(tok.token_to_id(t), Some(i as u32), "{t}");
    }
    assert_eq!(tok.pad_id(), Some(0));
    assert_eq!(tok.cls_id(), Some(2));
    assert_eq!(tok.sep_id(), Some(3));
    assert_eq!(tok.mask_id(), Some(4));
    assert_eq!((tok.eos_id(), tok.bos_id()), (None, None));

    let text = "a dog visits the café by the sea.";
    let plain = tok.encode(text, false).unwrap();
    let wrapped = tok.encode(text, true).unwrap();
    assert_eq!(wrapped.len(), plain.len() + 2);
    assert_eq!(wrapped[0], 2);
    assert_eq!(wrapped[wrapped.len() - 1], 3);
    assert_eq!(&wrapped[1..wrapped.len() - 1], &plain[..]);
    assert_eq!(
        tok.decode(&wrapped, false).unwrap(),
        format!("[CLS]{text}[SEP]")
    );
}

#[test]
fn tokenizer_save_load_round_trip() {
    let dir = empty_dir("save-load");
    for preset in [Preset::Gpt, Preset::Bert] {
        let tok = trained(preset);
        let path = dir.join(format!("{preset:?}.json"));
        tok.save(&path).unwrap();
        let loaded = Tokenizer::from_file(&path).unwrap();
        assert_eq!(loaded.preset(), preset);
        assert_eq!(loaded.vocab_size(), tok.vocab_size());
        assert_eq!(loaded.pad_id(), tok.pad_id());
        assert_eq!(loaded.eos_id(), tok.eos_id());
        assert_eq!(loaded.cls_id(), tok.cls_id());
        assert_eq!(loaded.sep_id(), tok.sep_id());
        assert_eq!(loaded.mask_id(), tok.mask_id());
        for text in TEXTS {
            for add_special in [false, true] {
                assert_eq!(
                    loaded.encode_with_offsets(text, add_special).unwrap(),
                    tok.encode_with_offsets(text, add_special).unwrap(),
                    "{preset:?} {text:?}"
                );
            }
        }
        // The file is Hugging Face's format.
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["model"]["type"], "BPE");
        assert_eq!(json["pre_tokenizer"]["type"], "ByteLevel");
        assert_eq!(json["added_tokens"][0]["special"], true);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tokenizer_offsets_slice_back_to_text() {
    let tok = trained(Preset::Bert);
    let text = "Our teacher paints the market in Hà Nội.";
    let (ids, offsets) = tok.encode_with_offsets(text, true).unwrap();
    assert_eq!(ids.len(), offsets.len());
    // Specials added around the text have empty offsets.
    assert_eq!(offsets[0], (0, 0));
    assert_eq!(offsets[offsets.len() - 1], (0, 0));
    let inner = &offsets[1..offsets.len() - 1];
    // Offsets are byte ranges in order, trimmed of the space a token carries in front.
    for (k, &(s, e)) in inner.iter().enumerate() {
        assert!(s < e && e <= text.len(), "token {k}: {s}..{e}");
        assert!(!text[s..e].starts_with(' '), "token {k}: {:?}", &text[s..e]);
        if k > 0 {
            assert!(inner[k - 1].1 <= s || inner[k - 1].1 == e, "overlap at {k}");
        }
    }
    // Whole tokens decode to the text they cover (ASCII part: no byte split inside a char).
    for (&id, &(s, e)) in ids[1..].iter().zip(inner) {
        if text[s..e].is_ascii() {
            assert_eq!(tok.decode(&[id], false).unwrap().trim_start(), &text[s..e]);
        }
    }
    // QA: the tokens whose offsets fall inside an answer's byte span cover exactly the answer.
    let answer = "the market";
    let a_start = text.find(answer).unwrap();
    let a_end = a_start + answer.len();
    let covered: Vec<_> = inner
        .iter()
        .filter(|&&(s, e)| s >= a_start && e <= a_end)
        .collect();
    assert_eq!(covered.first().unwrap().0, a_start);
    assert_eq!(covered.last().unwrap().1, a_end);
    // Non-ASCII: the span of the city is found by byte offsets too.
    let city = text.find("Hà Nội").unwrap();
    assert!(inner.iter().any(|&(s, _)| s == city));
    assert!(inner.iter().any(|&(_, e)| e == city + "Hà Nội".len()));
}

#[test]
fn tokenizer_encode_words_gives_word_ids() {
    let words = ["Alice", "visits", "the", "market", "in", "Hà", "Nội", "."];
    for preset in [Preset::Gpt, Preset::Bert] {
        let tok = trained(preset);
        let add_special = preset == Preset::Bert;
        let (ids, word_ids) = tok.encode_words(&words, add_special).unwrap();
        assert_eq!(ids, tok.encode(&words.join(" "), add_special).unwrap());
        assert_eq!(ids.len(), word_ids.len());
        if add_special {
            assert_eq!(word_ids[0], None);
            assert_eq!(word_ids[word_ids.len() - 1], None);
        }
        // Each word's tokens are contiguous, in order, and decode to the word.
        let real: Vec<(u32, usize)> = ids
            .iter()
            .zip(&word_ids)
            .filter_map(|(&id, w)| w.map(|w| (id, w)))
            .collect();
        for (w, word) in words.iter().enumerate() {
            let pieces: Vec<u32> = real
                .iter()
                .filter(|&&(_, x)| x == w)
                .map(|&(id, _)| id)
                .collect();
            assert!(!pieces.is_empty(), "{preset:?}: word {w} has no token");
            assert_eq!(tok.decode(&pieces, true).unwrap().trim_start(), *word);
        }
        assert!(real.windows(2).all(|p| p[0].1 <= p[1].1));
        // String words work too.
        let owned: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            tok.encode_words(&owned, add_special).unwrap(),
            (ids, word_ids)
        );
    }
}

#[test]
fn tokenizer_ner_labels_batch_end_to_end() {
    let tok = trained(Preset::Bert);
    // "Alice" and "Hà Nội" are entities; tag ids: 0 = O, 1 = B-PER, 2 = B-LOC, 3 = I-LOC.
    let sentences: [(&[&str], &[i64]); 2] = [
        (&["Alice", "visits", "Hà", "Nội"], &[1, 0, 2, 3]),
        (&["Bob", "likes", "the", "river", "."], &[1, 0, 0, 0, 0]),
    ];
    let mut seqs = Vec::new();
    let mut labels = Vec::new();
    for (words, tags) in sentences {
        let (ids, word_ids) = tok.encode_words(words, true).unwrap();
        let aligned = align_word_labels(&word_ids, tags).unwrap();
        // One counted label per word, in order; specials ignored.
        let counted: Vec<i64> = aligned
            .iter()
            .copied()
            .filter(|&l| l != IGNORE_INDEX)
            .collect();
        assert_eq!(counted, tags);
        assert_eq!(aligned[0], IGNORE_INDEX);
        seqs.push(ids);
        labels.push(aligned);
    }
    let pad = tok.pad_id().unwrap();
    let batch = pad_with_labels(&seqs, &labels, pad, PadSide::Right, None).unwrap();
    let lab = batch.labels.as_ref().unwrap();
    for b in 0..2 {
        let n = seqs[b].len();
        assert_eq!(batch.lengths()[b], n);
        for t in n..batch.seq_len() {
            assert_eq!(batch.ids[[b, t]], pad as usize);
            assert_eq!(lab[[b, t]], IGNORE_INDEX);
        }
    }
}

/// GPT-2's byte → symbol table (bytes_to_unicode): printable bytes map to themselves, the rest
/// to 256 + n. `order[i]` is the byte whose symbol has id i in GPT-2's vocabulary.
fn gpt2_byte_symbols() -> Vec<(u8, char)> {
    let mut bytes: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    bytes
        .into_iter()
        .zip(chars)
        .map(|(b, c)| (b as u8, char::from_u32(c).unwrap()))
        .collect()
}

/// A tokenizer.json laid out exactly as GPT-2's on the Hugging Face hub (legacy model without a
/// `type`, string merges, ByteLevel everywhere), with the real first 256 + 7 ids and
/// `<|endoftext|>` after them.
fn gpt2_style_json() -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    for (id, (_, c)) in gpt2_byte_symbols().into_iter().enumerate() {
        vocab.insert(c.to_string(), id.into());
    }
    let merges = ["Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he"];
    for (k, m) in merges.iter().enumerate() {
        vocab.insert(m.replace(' ', ""), (256 + k).into());
    }
    vocab.insert("<|endoftext|>".into(), 263.into());
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": 263, "special": true, "content": "<|endoftext|>",
            "single_word": false, "lstrip": false, "rstrip": false, "normalized": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true},
        "model": {"dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "vocab": vocab, "merges": merges}
    })
}

#[test]
fn tokenizer_loads_gpt2_format() {
    let dir = empty_dir("gpt2");
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, gpt2_style_json().to_string()).unwrap();
    let tok = Tokenizer::from_file(&path).unwrap();
    assert_eq!(tok.preset(), Preset::Gpt);
    assert_eq!(tok.vocab_size(), 264);
    assert_eq!(tok.eos_id(), Some(263));
    assert_eq!(tok.pad_id(), None, "GPT-2 has no pad token");
    // GPT-2's own ids: "Ġ" 220, "t" 83, "he" 258, "Ġthe" 262, "Ġa" 257.
    assert_eq!(tok.token_to_id("Ġ"), Some(220));
    assert_eq!(
        tok.encode("the the a", false).unwrap(),
        vec![83, 258, 262, 257]
    );
    let text = "the theory of everything, 100% ✓<|endoftext|>";
    let ids = tok.encode(text, true).unwrap();
    assert_eq!(ids.last(), Some(&263));
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    // Saved again, it loads to the same tokenizer.
    let again_path = dir.join("again.json");
    tok.save(&again_path).unwrap();
    let again = Tokenizer::from_file(&again_path).unwrap();
    assert_eq!(again.encode(text, true).unwrap(), ids);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A small uncased BERT vocabulary: the specials at their bert-base ids would need 30k lines,
/// so they come first here.
const BERT_VOCAB: [&str; 11] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "play", "##ing", "!", ",",
];

/// A tokenizer.json laid out exactly as bert-base-uncased's on the Hugging Face hub.
fn bert_style_json() -> serde_json::Value {
    let vocab: serde_json::Map<String, serde_json::Value> = BERT_VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i.into()))
        .collect();
    let added: Vec<_> = BERT_VOCAB[..5]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
            "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

/// The checks a BERT WordPiece tokenizer over [`BERT_VOCAB`] must pass, however it was built.
fn check_bert_wordpiece(tok: &Tokenizer) {
    assert_eq!(tok.preset(), Preset::Bert);
    assert_eq!(tok.vocab_size(), BERT_VOCAB.len());
    assert_eq!(
        (tok.pad_id(), tok.cls_id(), tok.sep_id(), tok.mask_id()),
        (Some(0), Some(2), Some(3), Some(4))
    );
    let text = "The cat, playing!";
    let (ids, offsets) = tok.encode_with_offsets(text, true).unwrap();
    assert_eq!(ids, vec![2, 5, 6, 10, 7, 8, 9, 3]);
    // Offsets are in the original (not lowercased) text; "playing" is play + ##ing.
    assert_eq!(&text[offsets[1].0..offsets[1].1], "The");
    assert_eq!(offsets[4], (9, 13));
    assert_eq!(offsets[5], (13, 16));
    assert_eq!(tok.decode(&ids, true).unwrap(), "the cat, playing!");
    assert_eq!(tok.encode("the dog", false).unwrap(), vec![5, 1]);
    let (_, word_ids) = tok.encode_words(&["The", "cat", "playing"], true).unwrap();
    assert_eq!(
        word_ids,
        vec![None, Some(0), Some(1), Some(2), Some(2), None]
    );
}

#[test]
fn tokenizer_loads_bert_format() {
    let dir = empty_dir("bert");
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, bert_style_json().to_string()).unwrap();
    check_bert_wordpiece(&Tokenizer::from_file(&path).unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tokenizer_from_vocab_txt_matches_bert_json() {
    let dir = empty_dir("vocab-txt");
    let path = dir.join("vocab.txt");
    std::fs::write(&path, BERT_VOCAB.join("\n") + "\n").unwrap();
    let tok = Tokenizer::from_vocab_txt(&path, true).unwrap();
    check_bert_wordpiece(&tok);
    // Saved as tokenizer.json, it loads back the same.
    let json_path = dir.join("tokenizer.json");
    tok.save(&json_path).unwrap();
    check_bert_wordpiece(&Tokenizer::from_file(&json_path).unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tokenizer_bad_files_are_errors_naming_the_file() {
    let dir = empty_dir("bad");
    let missing = dir.join("missing.json");
    match Tokenizer::from_file(&missing) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("missing.json")),
        other => panic!("expected Io error, got {other:?}"),
    }

    let cases: [(&str, String); 5] = [
        ("empty.json", String::new()),
        (
            "truncated.json",
            "{\n  \"version\": \"1.0\",\n  \"model\": {".into(),
        ),
        ("not-tokenizer.json", "{\"hello\": 1}".into()),
        (
            // A merge of tokens the vocabulary does not have.
            "bad-merge.json",
            {
                let mut j = gpt2_style_json();
                j["model"]["merges"] = json!(["x y"]);
                j["model"]["vocab"] = json!({"a": 0});
                j["added_tokens"] = json!([]);
                j.to_string()
            },
        ),
        (
            // A template naming a special token it does not define.
            "bad-template.json",
            {
                let mut j = bert_style_json();
                j["post_processor"]["special_tokens"] = json!({});
                j.to_string()
            },
        ),
    ];
    for (name, content) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &content).unwrap();
        match Tokenizer::from_file(&path) {
            Err(e @ Error::Data { .. }) => {
                assert!(e.to_string().contains(name), "{name}: {e}");
            }
            other => panic!("{name}: expected Data error, got {other:?}"),
        }
    }
    // The line of a JSON syntax error is reported.
    match Tokenizer::from_file(dir.join("truncated.json")) {
        Err(Error::Data { line, .. }) => assert_eq!(line, 3),
        other => panic!("expected Data error, got {other:?}"),
    }

    let vocab = dir.join("vocab.txt");
    std::fs::write(&vocab, "[UNK]\n[CLS]\n[SEP]\nthe\nthe\n").unwrap();
    match Tokenizer::from_vocab_txt(&vocab, true) {
        Err(Error::Data { path, line, .. }) => {
            assert!(path.ends_with("vocab.txt"));
            assert_eq!(line, 5);
        }
        other => panic!("expected Data error, got {other:?}"),
    }
    std::fs::write(&vocab, "the\ncat\n").unwrap();
    assert!(matches!(
        Tokenizer::from_vocab_txt(&vocab, true),
        Err(Error::Data { .. })
    ));
    assert!(matches!(
        Tokenizer::from_vocab_txt(dir.join("nope.txt"), true),
        Err(Error::Io { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tokenizer_bad_arguments_are_errors() {
    assert!(matches!(
        Tokenizer::train_bpe(&[], 400, Preset::Gpt),
        Err(Error::Invalid { .. })
    ));
    // 2 specials + 256 bytes do not fit in 257.
    assert!(matches!(
        Tokenizer::train_bpe(&corpus(), 257, Preset::Gpt),
        Err(Error::Invalid { .. })
    ));
    let tok = trained(Preset::Gpt);
    let too_big = tok.vocab_size() as u32;
    assert!(matches!(
        tok.decode(&[0, too_big], false),
        Err(Error::Invalid { .. })
    ));
    assert_eq!(tok.id_to_token(too_big), None);
    assert_eq!(tok.token_to_id("not a token"), None);
    // Saving into a directory that does not exist names the path.
    let dir = empty_dir("save-err");
    match tok.save(dir.join("no/such/dir/tokenizer.json")) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("tokenizer.json")),
        other => panic!("expected Io error, got {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// `encode_memo` gives exactly what `encode` gives, for each tokenizer its own: two tokenizers
/// that encode differently never share a remembered encoding, and a tokenizer written out and
/// read back (another value, the same fingerprint) gets the same ids.
#[test]
fn remembered_encodings_are_each_tokenizers_own() {
    use tunelab::data::encode::{encode, encode_memo};
    use tunelab::data::tasks::Example;
    let small = Tokenizer::train_bpe(&corpus(), 300, Preset::Gpt).unwrap();
    let large = Tokenizer::train_bpe(&corpus(), 400, Preset::Gpt).unwrap();
    assert_ne!(small.fingerprint(), large.fingerprint());
    let ex = Example::Classification {
        text: corpus()[0].clone(),
        label: 1,
    };
    let (a, b) = (
        encode(&small, &ex, &[], 64).unwrap(),
        encode(&large, &ex, &[], 64).unwrap(),
    );
    assert_ne!(
        a.ids, b.ids,
        "the test needs tokenizers that differ on this text"
    );
    for _ in 0..2 {
        assert_eq!(encode_memo(&small, &ex, &[], 64).unwrap(), a);
        assert_eq!(encode_memo(&large, &ex, &[], 64).unwrap(), b);
    }
    let dir = empty_dir("memo-tokenizer");
    small.save(dir.join("tokenizer.json")).unwrap();
    let again = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    assert_eq!(again.fingerprint(), small.fingerprint());
    assert_eq!(encode_memo(&again, &ex, &[], 64).unwrap(), a);
    // A shorter max_len is another key: its own truncation, not the longer one's.
    assert_eq!(
        encode_memo(&small, &ex, &[], 3).unwrap(),
        encode(&small, &ex, &[], 3).unwrap()
    );
}
