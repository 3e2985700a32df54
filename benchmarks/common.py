"""Shared benchmark helpers: machine facts, GEMM ceilings, peak RSS, timing, markdown, synthetic patents."""

from __future__ import annotations

import os
import platform
import random
import resource
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "GRADIO_ANALYTICS_ENABLED": "False",
}


def quiet_environment() -> None:
    """Offline, no telemetry, no progress bars from the libraries (ours print their own progress)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


# ---------------------------------------------------------------- machine facts


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_isa_flags() -> list[str]:
    """The vector/matrix extensions that decide GEMM speed (AVX2, AVX-512, bf16, AMX)."""
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return [f for f in wanted if f in flags]


def machine_facts(threads: int) -> dict[str, str]:
    """What a reader needs to compare numbers across machines."""
    import torch

    facts = {
        "CPU": cpu_model(),
        "ISA": " ".join(cpu_isa_flags()) or "unknown",
        "logical CPUs": str(os.cpu_count()),
        "torch threads": str(threads),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    for name in ("transformers", "sentence_transformers"):
        try:
            facts[name] = __import__(name).__version__
        except ImportError:
            facts[name] = "not installed"
    return facts


# ---------------------------------------------------------------- GEMM ceiling


@dataclass(frozen=True, slots=True)
class GemmShape:
    """One GEMM: (m x k) @ (k x n), as a plain matmul or as `F.linear` with an (n x k) weight."""

    m: int
    k: int
    n: int
    linear: bool = False

    @property
    def label(self) -> str:
        kind = "linear" if self.linear else "matmul"
        return f"{kind} {self.m}x{self.k}x{self.n}"


def measure_gemm(shape: GemmShape, dtype: Any, seconds: float = 1.0, repeats: int = 5) -> float:
    """Best-of-`repeats` FLOP/s of one GEMM shape (2*m*k*n per call) with torch's current threads.

    A slow path (bf16 on a CPU without native bf16 runs at a few GFLOP/s) gets fewer repeats, so
    the measurement takes about `seconds` plus two calls whatever the speed.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(shape.m, shape.k, generator=gen).to(dtype)
    if shape.linear:
        weight = torch.randn(shape.n, shape.k, generator=gen).to(dtype)

        def call() -> Any:
            return torch.nn.functional.linear(a, weight)
    else:
        b = torch.randn(shape.k, shape.n, generator=gen).to(dtype)

        def call() -> Any:
            return torch.matmul(a, b)

    with torch.inference_mode():
        call()
        start = time.perf_counter()
        call()
        once = max(time.perf_counter() - start, 1e-6)
        iters = max(1, int(seconds / repeats / once))
        best = once
        for _ in range(max(0, min(repeats, int(seconds / once)))):
            start = time.perf_counter()
            for _ in range(iters):
                call()
            best = min(best, (time.perf_counter() - start) / iters)
    return 2.0 * shape.m * shape.k * shape.n / best


def measure_gemm_ceilings(
    shapes: Sequence[GemmShape], dtypes: Sequence[str] = ("float32", "bfloat16"), seconds: float = 1.0
) -> dict[str, dict[str, float]]:
    """FLOP/s per dtype per shape; the ceiling of a dtype is the best over its shapes (`ceiling()`)."""
    import torch

    return {d: {s.label: measure_gemm(s, getattr(torch, d), seconds) for s in shapes} for d in dtypes}


def ceiling(gemm: dict[str, dict[str, float]], dtype: str) -> float:
    return max(gemm[dtype].values())


# ---------------------------------------------------------------- memory and time


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def process_peak_rss_bytes() -> int:
    """Peak RSS of this process over its whole life (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler:
    """Samples this process's RSS on a thread; `delta_bytes` is the peak above the RSS at start.

    A sampler misses spikes shorter than its interval, so pair it with `process_peak_rss_bytes()`,
    which the kernel keeps exactly but only as a whole-life maximum.

    Example:
        >>> with RssSampler() as rss:
        ...     buffer = bytearray(50_000_000)
        >>> rss.delta_bytes > 40_000_000
        True
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.baseline_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, rss_bytes())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.baseline_bytes = self.peak_bytes = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, rss_bytes())

    @property
    def delta_bytes(self) -> int:
        return self.peak_bytes - self.baseline_bytes


@dataclass(slots=True)
class Stopwatch:
    """Accumulated wall time over `with stopwatch.lap():` blocks."""

    seconds: float = 0.0
    laps: list[float] = field(default_factory=list)

    @contextmanager
    def lap(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.laps.append(elapsed)
            self.seconds += elapsed


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


# ---------------------------------------------------------------- score agreement


def score_agreement(reference: list[list[float]], other: list[list[float]]) -> dict[str, float]:
    """How far `other`'s per-query probabilities are from `reference`'s (each query's first pairs only
    where `other` scored fewer): max abs diff of P and of its logit, Spearman pooled and worst query,
    and the std of the reference logits, i.e. the spread that a ranking must resolve.
    """
    import numpy as np
    from scipy.stats import spearmanr

    ref = [np.asarray(r[: len(o)], dtype=np.float64) for r, o in zip(reference, other, strict=True)]
    oth = [np.asarray(o, dtype=np.float64) for o in other]
    flat_ref, flat_oth = np.concatenate(ref), np.concatenate(oth)

    def logit(p: Any) -> Any:
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    per_query = [float(spearmanr(r, o).statistic) for r, o in zip(ref, oth, strict=True) if len(r) > 2]
    return {
        "pairs": float(len(flat_ref)),
        "max_abs": float(np.max(np.abs(flat_ref - flat_oth))),
        "max_abs_logit": float(np.max(np.abs(logit(flat_ref) - logit(flat_oth)))),
        "spearman": float(spearmanr(flat_ref, flat_oth).statistic),
        "spearman_min_query": min(per_query) if per_query else float("nan"),
        "logit_std": float(np.std(logit(flat_ref))),
    }


# ---------------------------------------------------------------- markdown


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; numbers are shown as given (format them first)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def replace_markdown_section(path: Path, heading: str, body: str, title: str = "# Benchmarks") -> None:
    """Write `## heading` + body into `path`, replacing only that level-2 section (others are kept)."""
    marker = f"## {heading}"
    text = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == marker), None)
    section = [marker, "", *body.strip("\n").splitlines()]
    if start is None:
        lines = [*lines, *([""] if lines and lines[-1].strip() else []), *section]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = ["", *lines[end:]] if end < len(lines) else []
        lines = [*lines[:start], *section, *tail]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")


# ---------------------------------------------------------------- synthetic patent text

# Each domain's vocabulary as "English=中文" pairs, so both languages describe the same inventions.
_DOMAIN_TEXT = [
    {
        "part": "convolutional encoder=卷积编码器; attention module=注意力模块; image sensor=图像传感器; "
        "feature extraction network=特征提取网络; decoder branch=解码分支; "
        "noise estimation unit=噪声估计单元",
        "object": "input image=输入图像; feature map=特征图; noise component=噪声分量; "
        "training sample=训练样本; depth map=深度图",
        "action": "denoise=去噪; segment=分割; upsample=上采样; normalize=归一化; fuse=融合",
        "quality": "peak signal-to-noise ratio=峰值信噪比; inference latency=推理时延; "
        "segmentation accuracy=分割精度",
        "material": "weight tensor=权重张量; residual block=残差块",
    },
    {
        "part": "positive electrode=正极极片; separator=隔膜; current collector=集流体; "
        "battery management system=电池管理系统; cooling plate=冷却板; electrolyte injection port=注液口",
        "object": "lithium-ion cell=锂离子电芯; electrode slurry=电极浆料; "
        "solid electrolyte interphase=固体电解质界面膜; battery pack=电池包",
        "action": "coat=涂覆; calender=辊压; charge=充电; heat=加热; seal=密封",
        "quality": "cycle life=循环寿命; energy density=能量密度; thermal runaway resistance=抗热失控性能",
        "material": "lithium iron phosphate layer=磷酸铁锂层; ceramic coating=陶瓷涂层; copper foil=铜箔",
    },
    {
        "part": "planetary gear set=行星齿轮组; output shaft=输出轴; clutch housing=离合器壳体; "
        "bearing seat=轴承座; hydraulic actuator=液压执行器; spline sleeve=花键套",
        "object": "drive torque=驱动扭矩; gear ratio=传动比; lubricating oil=润滑油; "
        "vibration signal=振动信号",
        "action": "transmit=传递; engage=啮合; lubricate=润滑; dampen=衰减; lock=锁止",
        "quality": "transmission efficiency=传动效率; noise level=噪声水平; fatigue strength=疲劳强度",
        "material": "carburized steel=渗碳钢; bronze bushing=青铜衬套",
    },
    {
        "part": "base station=基站; user equipment=用户设备; antenna array=天线阵列; "
        "baseband processor=基带处理器; radio frequency front end=射频前端; "
        "beam management unit=波束管理单元",
        "object": "reference signal=参考信号; uplink grant=上行授权; channel state information=信道状态信息; "
        "data packet=数据包",
        "action": "transmit=发送; decode=解码; schedule=调度; precode=预编码; retransmit=重传",
        "quality": "spectral efficiency=频谱效率; handover success rate=切换成功率; power consumption=功耗",
        "material": "time-frequency resource=时频资源; control channel element=控制信道单元",
    },
]
DOMAINS: list[dict[str, list[tuple[str, str]]]] = [
    {key: [tuple(pair.split("=")) for pair in text.split("; ")] for key, text in d.items()}  # type: ignore[misc]
    for d in _DOMAIN_TEXT
]

_EN = [
    "According to an embodiment of the present invention, the {part} comprises a {part2} coupled to the "
    "{part3}.",
    "The {part} is configured to {action} the {object} in response to the {object2} received from the "
    "{part2}.",
    "In some embodiments, the {material} has a thickness of {n} to {m} micrometers.",
    "Wherein the {part} further comprises a {part2} disposed between the {part3} and the {material}.",
    "The method further includes a step of using the {part} to {action} the {object} for {m} ms.",
    "FIG. {n} is a schematic diagram illustrating the {part} according to embodiment {m} of the disclosure.",
    "As a result, the {quality} of the {object} is improved by about {pct}% compared with the prior art.",
    "It should be understood that the {part2} may also be replaced by the {material} without departing from "
    "the scope of the claims.",
    "In the prior art, the {part} cannot {action} the {object} reliably, which reduces the {quality}.",
]
_ZH = [
    "根据本发明的一个实施例，所述{part}包括与{part3}连接的{part2}。",
    "所述{part}被配置为响应于从{part2}接收的{object2}而对{object}进行{action}。",
    "在一些实施例中，所述{material}的厚度为{n}至{m}微米。",
    "其中，所述{part}还包括设置在{part3}与{material}之间的{part2}。",
    "该方法还包括利用所述{part}对{object}进行{action}处理{m}毫秒的步骤。",
    "图{n}是示出根据本公开实施例{m}的{part}的结构示意图。",
    "由此，与现有技术相比，{object}的{quality}提高了约{pct}%。",
    "应当理解，在不脱离权利要求范围的情况下，所述{part2}也可以由{material}代替。",
    "现有技术中，{object}无法被可靠地{action}，从而降低了{quality}。",
]
_QUERY_EN = [
    "method to {action} the {object} with a {part} that improves {quality}",
    "{part} and {part2} arranged to {action} the {object}",
]
_QUERY_ZH = [
    "一种利用{part}对{object}进行{action}以提高{quality}的方法",
    "包括{part}和{part2}的{object}{action}装置",
]


def _fill(template: str, domain: dict[str, list[tuple[str, str]]], lang: int, rng: random.Random) -> str:
    pick = {key: [w[lang] for w in words] for key, words in domain.items()}
    parts = rng.sample(pick["part"], 3)
    objects = rng.sample(pick["object"], 2)
    return template.format(
        part=parts[0],
        part2=parts[1],
        part3=parts[2],
        object=objects[0],
        object2=objects[1],
        action=rng.choice(pick["action"]),
        quality=rng.choice(pick["quality"]),
        material=rng.choice(pick["material"]),
        n=rng.randint(1, 12),
        m=rng.randint(2, 500),
        pct=rng.randint(5, 60),
    )


def patent_query(rng: random.Random, domain: int, lang: str) -> str:
    """A short patent-search query about one technical domain, in 'en' or 'zh'."""
    templates, index = (_QUERY_ZH, 1) if lang == "zh" else (_QUERY_EN, 0)
    return _fill(rng.choice(templates), DOMAINS[domain], index, rng)


def patent_passage(
    rng: random.Random, domain: int, lang: str, target_tokens: int, count_tokens: Callable[[str], int]
) -> str:
    """A description-style passage of about `target_tokens` tokens (never more), in 'en' or 'zh'.

    Sentences are added until the target is passed, then the text is cut at the longest character
    prefix that still fits, so the passage ends mid-sentence as real fixed-size chunks do.
    """
    templates, index, joiner = (_ZH, 1, "") if lang == "zh" else (_EN, 0, " ")
    sentences: list[str] = []
    while count_tokens(joiner.join(sentences)) <= target_tokens:
        sentences.append(_fill(rng.choice(templates), DOMAINS[domain], index, rng))
    text = joiner.join(sentences)
    low, high = 1, len(text)
    while low < high:  # the longest prefix whose token count fits the target
        mid = (low + high + 1) // 2
        if count_tokens(text[:mid]) <= target_tokens:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip()


@dataclass(frozen=True, slots=True)
class RerankWorkload:
    """Queries, each with its candidate passages (mixed Chinese and English, mixed lengths)."""

    queries: list[str]
    documents: list[list[str]]
    document_tokens: list[list[int]]


def rerank_workload(
    tokenizer: Any, queries: int, docs_per_query: int, min_tokens: int, max_tokens: int, seed: int = 0
) -> RerankWorkload:
    """Deterministic patent-like queries (alternating zh/en); half the passages share the query's domain."""
    rng = random.Random(seed)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    out_queries, out_docs, out_tokens = [], [], []
    for q in range(queries):
        domain = q % len(DOMAINS)
        out_queries.append(patent_query(rng, domain, "zh" if q % 2 == 0 else "en"))
        docs, tokens = [], []
        for _ in range(docs_per_query):
            doc_domain = domain if rng.random() < 0.5 else rng.randrange(len(DOMAINS))
            text = patent_passage(
                rng, doc_domain, rng.choice(("zh", "en")), rng.randint(min_tokens, max_tokens), count
            )
            docs.append(text)
            tokens.append(count(text))
        out_docs.append(docs)
        out_tokens.append(tokens)
    return RerankWorkload(out_queries, out_docs, out_tokens)
