"""The measuring parts of an evaluation: score reconstructions of one image set, per token count
and per codec setting.

Every metric comes from `tokenizers_vis.metrics`; this module only runs them over batches.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tokenizers_vis.evaluation.cache import CodecCache
from tokenizers_vis.precision import autocast

KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # fid_kid's defaults (Binkowski et al.'s 100 x 1000)

# reconstruct(index, x (b 3 h w) in [-1, 1]) -> (images (b 3 h w), bytes per image (b,) | None)
Reconstruct = Callable[[slice, Tensor], tuple[Tensor, Tensor | None]]


def batches(images: Tensor, batch_size: int) -> Iterator[tuple[slice, Tensor]]:
    """(index slice, (b, 3, h, w) float in [-1, 1]) over uint8 images (n, 3, h, w)."""
    from tokenizers_vis.data.transforms import to_tensor

    for start in range(0, images.shape[0], batch_size):
        part = images[start : start + batch_size]  # (b 3 h w) uint8
        floats = torch.stack([to_tensor(x.permute(1, 2, 0)) for x in part])  # (b 3 h w)
        yield slice(start, start + part.shape[0]), floats


def kid_subsets(num_real: int, num_fake: int) -> int:
    """KID's number of random subsets: the usual 100, or 1 when every subset is the whole set.

    Subsets hold min(KID_SUBSET_SIZE, n_real, n_fake) features; when both sides have exactly that
    many, each "random subset" is a permutation of all of them, and the MMD estimate does not
    depend on order. One subset then gives the same mean (and std 0, as 100 would) 100x faster.
    """
    return 1 if num_real == num_fake <= KID_SUBSET_SIZE else KID_SUBSETS


class Scorer:
    """Scores reconstructions of one fixed image set (n, 3, h, w) uint8 against its originals.

    Args:
        extractor: FID feature extractor, or None for no rFID / KID.
        reference: (n, 2048) features of the originals (needed with an extractor).
        perceptual: a perceptual distance module, or None.
        seed: seeds KID's subsets.
    """

    def __init__(
        self,
        images: Tensor,
        batch_size: int,
        device: torch.device,
        extractor: nn.Module | None = None,
        reference: Tensor | None = None,
        perceptual: nn.Module | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        if extractor is not None and reference is None:
            raise ValueError("an FID extractor needs the originals' reference features")
        self.images, self.batch_size, self.device = images, batch_size, device
        self.extractor = extractor.to(device) if extractor is not None else None
        self.reference, self.seed, self.progress = reference, seed, progress
        self.perceptual = perceptual.to(device) if perceptual is not None else None
        self.suite_reference = None
        if self.extractor is not None and hasattr(self.extractor, "forward_evaluation"):
            self.suite_reference = self._originals_suite()

    def _originals_suite(self):
        """The originals' full feature set (pool, spatial, logits) for sFID / IS / P / R."""
        from tokenizers_vis.data.transforms import to_uint8
        from tokenizers_vis.metrics.inception_features import FeatureSet, batch_features
        from tokenizers_vis.metrics.suite import ReferenceSide

        parts = [batch_features(self.extractor, to_uint8(x))
                 for _, x in batches(self.images, self.batch_size)]  # fmt: skip
        return ReferenceSide.from_features(FeatureSet.cat(parts))

    def score(self, reconstruct: Reconstruct, desc: str) -> dict[str, float]:
        """Every metric of the images `reconstruct` returns, batch by batch."""
        from tokenizers_vis.data.transforms import to_uint8
        from tokenizers_vis.metrics import ReconstructionMeter, extract_features, fid_kid
        from tokenizers_vis.metrics.inception_features import FeatureSet, batch_features

        meter, features, sizes = ReconstructionMeter(self.perceptual), [], []
        total = -(-self.images.shape[0] // self.batch_size)
        parts = batches(self.images, self.batch_size)
        for index, x in tqdm(parts, desc=desc, total=total, leave=False, disable=not self.progress):
            recon, size = reconstruct(index, x)
            recon, x = recon.float().to(self.device), x.to(self.device)
            meter.update(recon, x)
            if size is not None:
                sizes.append(size.double())
            if self.suite_reference is not None:
                features.append(batch_features(self.extractor, to_uint8(recon)))
            elif self.extractor is not None:
                features.append(extract_features([recon], self.extractor, progress=False))
        out = meter.compute()
        if sizes:
            out["bytes_per_image"] = torch.cat(sizes).mean().item()
        if self.extractor is not None:
            suite = FeatureSet.cat(features) if self.suite_reference is not None else None
            fake = suite.pool if suite is not None else torch.cat(features)  # (n 2048)
            subsets = kid_subsets(self.reference.shape[0], fake.shape[0])
            stats = fid_kid(self.reference, fake, kid_subsets=subsets, seed=self.seed)
            out.update(rfid=stats["fid"], kid_mean=stats["kid_mean"], kid_std=stats["kid_std"])
            if suite is not None:
                out.update(self._suite(suite))
        return out

    def _suite(self, fake) -> dict[str, float]:
        """sFID, IS, precision / recall (float32 distances); a metric that cannot be measured
        (IS without the classifier's weights, or under 10 images) is left out of the row."""
        from tokenizers_vis.metrics.suite import suite_metrics

        found = suite_metrics(self.suite_reference, fake, kid=False, seed=self.seed)
        keep = ("sfid", "inception_score", "precision", "recall")
        return {name: found[name] for name in keep if found[name] is not None}


def reference(
    images: Tensor,
    extractor: nn.Module,
    spec: str | None,
    split: str,
    batch_size: int,
    cache_dir: Path | None,
    device: torch.device,
    progress: bool = False,
) -> Tensor:
    """(n, 2048) features of the originals; from the on-disk cache when the same data spec and
    split were seen before (`spec` None: images given directly, never cached)."""
    from tokenizers_vis.metrics import extract_features, reference_features

    if spec is None:
        parts = (x for _, x in batches(images, batch_size))
        return extract_features(parts, extractor, device, progress, desc="originals")
    gen = (x for _, x in batches(images, batch_size))  # only read on a cache miss
    return reference_features(
        gen,
        extractor,
        dataset=spec,
        split=split,
        image_size=images.shape[-1],
        num_images=images.shape[0],
        cache_dir=cache_dir,
        device=device,
        progress=progress,
    )


def decode_prefix(
    tok,
    ids: Tensor,
    k: int,
    seed: int,
    precision: str,
    num_steps: int | None,
    index: slice,
    x: Tensor,
) -> tuple[Tensor, None]:
    """The images that the first k of `ids[index]` decode to, (b 3 h w)."""
    from tokenizers_vis import Tokens

    device = next(tok.parameters()).device
    # Seeded per batch: sampling decoders (rectified flow) repeat exactly for a fixed seed.
    gen = torch.Generator(device).manual_seed(seed + index.start)
    with autocast(device, precision):
        tokens = Tokens(ids[index, :k].to(device))
        images = tok.decode(tokens, num_steps=num_steps, generator=gen)
    return images.float(), None


def codec_roundtrip(codec: str, quality: int, index: slice, x: Tensor) -> tuple[Tensor, Tensor]:
    from tokenizers_vis.metrics import codec_roundtrip as roundtrip

    point = roundtrip(x, codec, quality)
    return point.images, point.bytes_per_image  # (b 3 h w), (b,)


def encode_all(
    tok,
    images: Tensor,
    batch_size: int,
    precision: str = "auto",
    refine_steps: int = 0,
    refine_lr: float = 0.1,
    progress: bool = False,
) -> Tensor:
    """Ids of all K tokens of every image, (n, K, g) int64 on CPU; a prefix is any k.

    `refine_steps` > 0: encoder-side refinement (`tokenizers_vis.refine`) over the prefixes
    1, 2, 4, .., K, the default sweep.
    """
    from tokenizers_vis.refine import refine_tokens

    device = next(tok.parameters()).device
    total = -(-images.shape[0] // batch_size)
    parts = tqdm(batches(images, batch_size), desc="encode", total=total, disable=not progress)

    def encode(x: Tensor) -> Tensor:
        with autocast(device, precision):
            if refine_steps:
                return refine_tokens(tok, x, steps=refine_steps, lr=refine_lr).ids
            return tok.encode(x).ids

    return torch.cat([encode(x.to(device)).cpu() for _, x in parts])  # (n K g)


def sweep_tokens(
    tok,
    ids: Tensor,
    ks: list[int],
    scorer: Scorer,
    seed: int,
    precision: str = "auto",
    num_steps: int | None = None,
) -> list[dict]:
    """One row per k: rate and every metric of the k-token reconstructions."""
    from tokenizers_vis.metrics import bits_per_token

    bits = bits_per_token(tok.vocab_sizes)
    rows = []
    for k in tqdm(ks, desc="token counts", disable=not scorer.progress):
        decode = functools.partial(decode_prefix, tok, ids, k, seed, precision, num_steps)
        row = {"k": k, "bits_per_image": k * bits, "bytes_per_image": k * bits / 8}
        start = time.perf_counter()
        scores = scorer.score(decode, f"k={k}")
        # Wall time of decoding and scoring, per image: what a sampling decoder's steps cost.
        row["seconds_per_image"] = (time.perf_counter() - start) / scorer.images.shape[0]
        rows.append({**row, **scores})
    return rows


def sweep_codecs(
    plan: dict[str, list[int]], scorer: Scorer, cache: CodecCache
) -> dict[str, list[dict]]:
    """Codec name -> one row per quality, with the mean whole-file bytes per image."""
    out = {}
    for codec, qualities in plan.items():
        rows = []
        for q in tqdm(qualities, desc=f"{codec} qualities", disable=not scorer.progress):
            row = cache.get(codec, q)
            if row is None:
                roundtrip = functools.partial(codec_roundtrip, codec, q)
                row = {"quality": q, **scorer.score(roundtrip, f"{codec} q={q}")}
                cache.put(codec, q, row)
            rows.append(row)
        out[codec] = rows
    return out


def reconstruction_rows(
    tok,
    ids: Tensor,
    images: Tensor,
    ks: list[int],
    seed: int,
    count: int = 8,
    num_steps: int | None = None,
) -> list[tuple[str, Tensor]]:
    """(label, (b, 3, h, w) in [-1, 1]) rows for the grid: the originals, then one per k."""
    index = slice(0, min(count, images.shape[0]))
    originals = next(batches(images[index], count))[1]
    rows = [("original", originals)]
    for k in ks:
        decoded = decode_prefix(tok, ids, k, seed, "fp32", num_steps, index, originals)[0]
        rows.append((f"k={k}", decoded.cpu()))
    return rows
