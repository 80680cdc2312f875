"""The arithmetic of a dataset review (SpRAy, Lapuschkin et al. 2019): evidence maps -> features -> a sparse
k-nearest-neighbour affinity graph -> the spectrum of its normalised Laplacian -> the number of clusters from
the eigengap -> spectral clustering -> a 2-D embedding to look at -> per-cluster statistics and the flags of
suspicious clusters, with their reasons in words.

Everything here works on arrays (no files): :func:`cluster_maps` takes ``(N, H, W)`` or ``(N, C, H, W)``
evidence maps of one class and returns a :class:`MapClusters`.

Memory and time grow about linearly with the number of maps: the affinity graph keeps ``k`` neighbours per
map (sparse), the eigenvectors are found by ARPACK on that sparse matrix, and the 2-D t-SNE is Barnes-Hut
(``N log N``). The nearest-neighbour search is exact (brute force in blocks, ``N^2 D`` operations but
small constants).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Side of the square each map is averaged down to before comparing maps (``FEATURE_SIZE^2`` numbers a map,
#: times the channels when they are kept).
FEATURE_SIZE = 16
#: Side of the cluster mean maps kept for display and for the location statistics.
DISPLAY_SIZE = 64
#: Side of the small per-map pictures kept in the arrays file (thumbnails when the overlay is not there).
THUMB_SIZE = 32
#: Largest number of clusters the eigengap may choose.
MAX_CLUSTERS = 8
#: The image border band: this fraction of the width (height) on each side (44 % of the image).
BORDER_BAND = 0.125
#: A mean map's **peak**: what it holds above its own 90th percentile (its strongest tenth of pixels).
PEAK_QUANTILE = 0.9
#: A cluster's evidence is "on the border" when at least this share of its mean map's peak lies in the band
#: and (when the class has other clusters) at least :data:`BORDER_RATIO` times the share of theirs.
BORDER_SHARE, BORDER_RATIO = 0.5, 1.5
#: A cluster's evidence is "away from where the class's other clusters look" when the cosine similarity of
#: its mean map with theirs, each above its median (the floor every map shares), is below this.
OFF_LOCATION_OVERLAP = 0.2
#: "small": at most this share of the class's maps.
SMALL_SHARE = 0.25
#: "tight": the members' mean distance to their centre is at most this fraction of the class's.
TIGHT_RATIO = 0.6
#: The eigenvalues must jump by at least this factor for more than one cluster (:func:`eigengap`).
GAP_RATIO = 3.0
#: Eigenvalues below this are zero (unconnected parts of the graph).
ZERO_EIGENVALUE = 1e-9
#: Embeddings for display.
EMBEDDINGS = ("tsne", "spectral", "umap")
#: t-SNE runs on the maps projected on this many principal components (the usual pre-reduction); above
#: TSNE_LARGE maps it runs 500 iterations (not 1,000) with a coarser Barnes-Hut angle (0.7, not 0.5), which
#: halves its time: the picture is for finding clusters by eye, the clusters themselves come from the graph.
TSNE_COMPONENTS, TSNE_LARGE = 50, 3000


class AnalysisError(ValueError):
    """The arrays or settings cannot be analysed; the message says why (the file layer turns it into an
    :class:`engine.errors.FGVisError`)."""


# ---------------------------------------------------------------------------------------------- features
def area_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)`` float32: row ``i`` averages the input over the span output cell ``i`` covers
    (area resampling; exact block means when ``size_in`` is a multiple of ``size_out``, and a nearest-style
    copy when enlarging)."""
    edges = np.linspace(0.0, size_in, size_out + 1)
    matrix = np.zeros((size_out, size_in), np.float64)
    for i in range(size_out):
        low, high = edges[i], edges[i + 1]
        for j in range(math.floor(low), min(math.ceil(high), size_in)):
            matrix[i, j] = max(0.0, min(high, j + 1) - max(low, j))
        matrix[i] /= matrix[i].sum()
    return matrix.astype(np.float32)


def resize_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """``(..., H, W)`` -> ``(..., size, size)`` float32 by area resampling (:func:`area_matrix`)."""
    maps = np.asarray(maps, np.float32)
    height, width = maps.shape[-2:]
    rows, cols = area_matrix(height, size), area_matrix(width, size)
    return np.matmul(np.matmul(rows, maps), cols.T)


def map_features(maps: np.ndarray, size: int = FEATURE_SIZE, channels: bool = False) -> np.ndarray:
    """``(N, [C,] H, W)`` evidence maps -> ``(N, D)`` float32 features: averaged over the channels unless
    ``channels``, area-resampled to ``size x size``, each row scaled to unit length (so distances compare
    where the evidence lies, not how much there is; a map without evidence stays all zero)."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 4 and not channels:
        maps = maps.mean(axis=1)
    if maps.ndim not in (3, 4):
        raise AnalysisError(f"evidence maps must be (N, H, W) or (N, C, H, W), not {maps.shape}")
    small = resize_maps(maps, size).reshape(len(maps), -1)
    norms = np.linalg.norm(small, axis=1, keepdims=True)
    return np.divide(small, norms, out=np.zeros_like(small), where=norms > 0)


def default_neighbours(count: int) -> int:
    """Neighbours per map in the affinity graph: ``2 ln N`` between 5 and 20 (fewer when there are fewer
    maps)."""
    return int(min(max(count - 1, 1), max(5, min(20, round(2 * math.log(max(count, 2)))))))


# ---------------------------------------------------------------------------------------------- graph
def knn_affinity(features: np.ndarray, neighbours: int):
    """Sparse symmetric affinity ``(N, N)`` (``scipy.sparse.csr_matrix``) on the **mutual** ``neighbours``
    nearest maps (``i`` and ``j`` each among the other's nearest), plus each map's own nearest neighbour so
    that no map is left alone, with the self-tuning Gaussian kernel of Zelnik-Manor & Perona (2004):
    ``w_ij = exp(-d_ij^2 / (s_i s_j))``, ``s_i`` the distance to map ``i``'s 7th neighbour (its last when it
    has fewer).

    Mutual neighbours keep a group of maps that resemble each other more than anything else (a shortcut
    many images share) apart from the maps around it: one-sided links, from the edge of a large group into
    the small one, would otherwise tie them together."""
    from scipy import sparse
    from sklearn.neighbors import NearestNeighbors

    count = len(features)
    neighbours = int(min(neighbours, count - 1))
    if neighbours < 1:
        raise AnalysisError("an affinity graph needs at least 2 maps")
    search = NearestNeighbors(n_neighbors=neighbours + 1, algorithm="brute").fit(features)
    distances, indices = search.kneighbors(features)
    # Drop each map itself (it is among its own nearest; duplicates may come first, so drop by index).
    keep = indices != np.arange(count)[:, None]
    keep[keep.sum(1) > neighbours, -1] = False  # rows where the map itself was not found: drop the farthest
    distances = distances[keep].reshape(count, neighbours)
    indices = indices[keep].reshape(count, neighbours)
    scale = distances[:, min(7, neighbours) - 1]
    floor = max(float(np.median(scale)) * 1e-3, 1e-6)
    scale = np.maximum(scale, floor)
    weights = np.exp(-(distances**2) / (scale[:, None] * scale[indices]))
    rows = np.repeat(np.arange(count), neighbours)
    graph = sparse.csr_matrix((weights.ravel(), (rows, indices.ravel())), shape=(count, count))
    nearest = sparse.csr_matrix((weights[:, 0], (np.arange(count), indices[:, 0])), shape=(count, count))
    return graph.minimum(graph.T).maximum(nearest).maximum(nearest.T).tocsr()


def laplacian_spectrum(affinity, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenvalues (ascending) of the symmetric normalised Laplacian
    ``I - D^-1/2 W D^-1/2`` and their eigenvectors ``(N, count)`` (dense solver up to 1,500 maps, ARPACK on
    the sparse matrix above)."""
    from scipy import sparse
    from scipy.sparse.linalg import eigsh

    size = affinity.shape[0]
    count = int(min(count, size))
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    normalised = sparse.diags(scale) @ affinity @ sparse.diags(scale)
    if size <= 1500 or count >= size - 1:
        values, vectors = np.linalg.eigh(normalised.toarray())
        values, vectors = values[::-1][:count], vectors[:, ::-1][:, :count]
    else:
        start = np.random.default_rng(seed).uniform(0.5, 1.0, size)
        values, vectors = eigsh(normalised.tocsr(), k=count, which="LA", v0=start, tol=1e-6, maxiter=size * 20)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
    eigenvalues = np.clip(1.0 - values, 0.0, 2.0)
    return eigenvalues.astype(np.float64), vectors.astype(np.float64)


def eigengap(eigenvalues: np.ndarray, max_clusters: int = MAX_CLUSTERS) -> tuple[int, np.ndarray]:
    """The number of clusters ``K`` (1..``max_clusters``) from the ascending Laplacian eigenvalues
    ``lambda_0 = 0 <= lambda_1 <= ...``, and the jump of each ``K = 2..``: ``lambda_K / lambda_{K-1}``.

    ``K`` near-zero eigenvalues followed by a jump mean ``K`` (nearly) unconnected groups of maps. The gap is
    measured as a ratio: ``K`` is where the eigenvalues jump by the largest factor, when that factor is at
    least :data:`GAP_RATIO`, else 1. Maps that vary smoothly without forming groups (evidence on an object at
    any place: a 2-D family) give eigenvalues that grow steadily, about in proportion to ``k``, and no jump
    of that size: one strategy. Eigenvalues below :data:`ZERO_EIGENVALUE` are zero (unconnected parts); when
    all up to ``max_clusters`` are, ``K`` is ``max_clusters``."""
    values = np.asarray(eigenvalues, np.float64)
    usable = int(min(max_clusters, len(values) - 1))
    if usable < 2:
        return 1 if usable < 1 or values[1] > ZERO_EIGENVALUE else usable, np.zeros(0)
    below, above = values[1:usable], values[2 : usable + 1]  # lambda_{K-1}, lambda_K for K = 2..usable
    zero_below, zero_above = below <= ZERO_EIGENVALUE, above <= ZERO_EIGENVALUE
    ratios = np.where(zero_below, np.where(zero_above, 1.0, np.inf), above / np.maximum(below, ZERO_EIGENVALUE))
    if zero_above.all():
        return usable, ratios
    best = int(np.argmax(ratios))
    return (best + 2 if ratios[best] >= GAP_RATIO else 1), ratios


def spectral_labels(vectors: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster of each map from the first ``clusters`` eigenvectors (rows scaled to unit length, k-means
    with 10 starts; Ng, Jordan & Weiss 2002), renumbered by size (0 = largest)."""
    from sklearn.cluster import KMeans

    if clusters <= 1:
        return np.zeros(len(vectors), np.int64)
    embedding = vectors[:, :clusters]
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = np.divide(embedding, norms, out=np.zeros_like(embedding), where=norms > 0)
    labels = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(embedding)
    return renumber_by_size(labels)


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """``labels`` renumbered 0, 1, ... by decreasing cluster size (ties: the cluster met first)."""
    labels = np.asarray(labels)
    found, first, sizes = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(found)), key=lambda i: (-sizes[i], first[i]))
    mapping = {int(found[i]): rank for rank, i in enumerate(order)}
    return np.array([mapping[int(value)] for value in labels], np.int64)


def embed_2d(features: np.ndarray, method: str, vectors: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """``(N, 2)`` display coordinates: ``"tsne"`` (Barnes-Hut t-SNE on the first :data:`TSNE_COMPONENTS`
    principal components; fewer iterations above :data:`TSNE_LARGE` maps), ``"spectral"`` (the 2nd and 3rd
    Laplacian eigenvectors) or ``"umap"`` (needs the optional ``umap-learn``). Fewer than 5 maps: the
    spectral coordinates (t-SNE needs a few neighbours)."""
    count = len(features)
    if method not in EMBEDDINGS:
        raise AnalysisError(f"unknown embedding {method!r}: choose from {', '.join(EMBEDDINGS)}")
    if count < 5 or method == "spectral":
        if vectors is None or vectors.shape[1] < 2:
            return np.zeros((count, 2), np.float32)
        coords = vectors[:, 1:3] if vectors.shape[1] >= 3 else np.c_[vectors[:, 1], np.zeros(count)]
        return _standardise(coords)
    if float(np.ptp(features, axis=0).max()) < 1e-9:  # every map alike: nothing to spread out
        return np.zeros((count, 2), np.float32)
    reduced = _pca(features, seed)
    if not np.isfinite(reduced).all():
        raise AnalysisError("the maps could not be projected for the embedding (not finite after PCA)")
    if method == "umap":
        try:
            import umap
        except ImportError as exc:
            raise AnalysisError(
                "the umap embedding needs the optional package umap-learn (pip install umap-learn)"
            ) from exc
        coords = umap.UMAP(n_neighbors=min(15, count - 1), random_state=seed).fit_transform(reduced)
        return _standardise(coords)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (count - 1) / 3.0)))
    large = count > TSNE_LARGE
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        random_state=seed,
        learning_rate="auto",
        max_iter=500 if large else 1000,
        angle=0.7 if large else 0.5,
    )
    return _standardise(tsne.fit_transform(reduced))


def _pca(features: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    components = min(TSNE_COMPONENTS, features.shape[1], len(features) - 1)
    if components >= features.shape[1]:
        return features.astype(np.float32)
    return PCA(n_components=components, random_state=seed).fit_transform(features).astype(np.float32)


def _standardise(coords: np.ndarray) -> np.ndarray:
    coords = np.asarray(coords, np.float64)
    coords = coords - coords.mean(0)
    spread = coords.std()
    return (coords / spread if spread > 0 else coords).astype(np.float32)


# ---------------------------------------------------------------------------------------------- statistics
@dataclass
class ClusterStats:
    """One cluster of a class.

    ``members``: indices of its maps; ``share``: its fraction of the class; ``centre`` ``(x, y)`` and
    ``spread`` (standard deviation around the centre) of its mean map's evidence above the map's median (the
    floor every map shares), in image widths / heights (0..1); ``border_share``: the share of the mean map's
    peak (:data:`PEAK_QUANTILE`) within :data:`BORDER_BAND` of the edges; ``concentration``: mean share of
    each member's evidence in its own top 10 % of pixels; ``overlap``: cosine similarity of its mean map with
    the mean map of the class's other clusters, both above their medians (``None`` for a class with one
    cluster); ``tightness``: the members' mean feature distance to their centre over the class's (below 1:
    tighter than the class); ``flagged`` and ``reasons`` (words) of :func:`flag_clusters`."""

    index: int
    members: np.ndarray
    share: float
    centre: tuple[float, float]
    spread: float
    border_share: float
    concentration: float
    overlap: float | None
    tightness: float
    flagged: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class MapClusters:
    """Result of :func:`cluster_maps` for one class: ``labels`` ``(N,)`` cluster of each map, ``embedding``
    ``(N, 2)``, ``eigenvalues`` (the smallest, ascending), ``clusters_chosen`` and how (``"eigengap"``,
    ``"given"`` or ``"too few maps"``), ``neighbours`` of the graph, ``mean_maps`` ``(K, DISPLAY_SIZE,
    DISPLAY_SIZE)``, ``thumbs`` ``(N, THUMB_SIZE, THUMB_SIZE)`` uint8 (each map scaled to its maximum),
    ``clusters`` (statistics, flags) and ``seconds`` per stage."""

    labels: np.ndarray
    embedding: np.ndarray
    eigenvalues: np.ndarray
    clusters_chosen: int
    chosen_by: str
    neighbours: int
    mean_maps: np.ndarray
    thumbs: np.ndarray
    clusters: list[ClusterStats]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class ReducedMaps:
    """What the analysis keeps of ``N`` evidence maps: ``features`` ``(N, D)`` (:func:`map_features`),
    ``display`` ``(N, DISPLAY_SIZE, DISPLAY_SIZE)`` float32 channel means (for cluster means and the location
    statistics) and ``thumbs`` ``(N, THUMB_SIZE, THUMB_SIZE)`` uint8 (each map scaled to its maximum)."""

    features: np.ndarray
    display: np.ndarray
    thumbs: np.ndarray

    def __len__(self) -> int:
        return len(self.features)

    @classmethod
    def concatenate(cls, parts: list[ReducedMaps]) -> ReducedMaps:
        if not parts:
            return cls(
                np.zeros((0, 0), np.float32),
                np.zeros((0, DISPLAY_SIZE, DISPLAY_SIZE), np.float32),
                np.zeros((0, THUMB_SIZE, THUMB_SIZE), np.uint8),
            )
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("features", "display", "thumbs")))


def reduce_maps(maps: np.ndarray, feature_size: int = FEATURE_SIZE, channels: bool = False) -> ReducedMaps:
    """:class:`ReducedMaps` of ``(N, H, W)`` or ``(N, C, H, W)`` evidence maps (non-negative, finite)."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim not in (3, 4):
        raise AnalysisError(f"evidence maps must be (N, H, W) or (N, C, H, W), not {maps.shape}")
    if not np.isfinite(maps).all():
        raise AnalysisError("evidence maps must be finite numbers")
    if maps.size and maps.min() < 0:
        raise AnalysisError("evidence maps must not be negative")
    mean_channels = maps.mean(axis=1) if maps.ndim == 4 else maps
    return ReducedMaps(
        map_features(maps, feature_size, channels), resize_maps(mean_channels, DISPLAY_SIZE), _thumbs(mean_channels)
    )


def cluster_maps(
    maps: np.ndarray, *, channels: bool = False, feature_size: int = FEATURE_SIZE, **options
) -> MapClusters:
    """SpRAy on the evidence maps of one class: :func:`cluster_reduced` of :func:`reduce_maps`.

    ``maps`` ``(N, H, W)`` or ``(N, C, H, W)``: non-negative evidence (higher = more evidence for the
    class); ``channels``: compare the maps per colour channel (FGVis masks are per channel) instead of their
    channel mean; ``feature_size``: maps are compared at ``feature_size x feature_size``."""
    if len(maps) == 0:
        raise AnalysisError("no evidence maps to analyse")
    return cluster_reduced(reduce_maps(maps, feature_size, channels), **options)


def cluster_reduced(
    reduced: ReducedMaps,
    *,
    clusters: int | str = "auto",
    neighbours: int | None = None,
    max_clusters: int = MAX_CLUSTERS,
    embedding: str = "tsne",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> MapClusters:
    """Spectral relevance analysis of one class's :class:`ReducedMaps`.

    Parameters
    ----------
    clusters
        ``"auto"`` (:func:`eigengap`, at most ``max_clusters``) or a number of clusters.
    neighbours
        Per map in the affinity graph (default :func:`default_neighbours`).
    embedding
        One of :data:`EMBEDDINGS`, for display.

    Raises
    ------
    AnalysisError
        No maps, or fewer maps than ``clusters``.
    """
    import time

    say = log or (lambda message: None)
    count = len(reduced)
    if count == 0:
        raise AnalysisError("no evidence maps to analyse")
    wanted = _wanted_clusters(clusters, max_clusters)
    if wanted is not None and wanted > count:
        raise AnalysisError(
            f"{count} map(s), fewer than the {wanted} clusters asked for: ask for {count} or fewer, "
            "or let the eigengap choose (auto)"
        )
    features = reduced.features
    seconds: dict[str, float] = {}
    neighbours = default_neighbours(count) if neighbours is None else int(min(neighbours, count - 1))
    vectors = None
    if count < 3:
        labels = np.arange(count) if wanted == count and count > 1 else np.zeros(count, np.int64)
        chosen, chosen_by, eigenvalues = int(labels.max()) + 1, "too few maps", np.zeros(0)
    else:
        say(f"{count} maps: building the nearest-neighbour graph")
        started = time.perf_counter()
        affinity = knn_affinity(features, neighbours)
        seconds["graph"] = time.perf_counter() - started
        say("spectral embedding")
        started = time.perf_counter()
        eigenvalues, vectors = laplacian_spectrum(affinity, min(max(max_clusters, wanted or 0) + 2, count), seed)
        seconds["spectrum"] = time.perf_counter() - started
        if wanted is None:
            chosen, _ = eigengap(eigenvalues, min(max_clusters, count - 1))
            chosen_by = "eigengap"
        else:
            chosen, chosen_by = wanted, "given"
        say(f"{count} maps, {neighbours} neighbours each: {chosen} cluster(s) ({chosen_by})")
        started = time.perf_counter()
        labels = spectral_labels(vectors, chosen, seed)
        chosen = int(labels.max()) + 1
        seconds["clustering"] = time.perf_counter() - started
    say(f"2-D {embedding} embedding for display")
    started = time.perf_counter()
    coords = embed_2d(features, embedding, vectors, seed)
    seconds["embedding"] = time.perf_counter() - started
    started = time.perf_counter()
    stats, mean_maps = cluster_statistics(reduced.display, features, labels)
    flag_clusters(stats)
    seconds["statistics"] = time.perf_counter() - started
    return MapClusters(
        labels, coords, eigenvalues, chosen, chosen_by, neighbours, mean_maps, reduced.thumbs, stats, seconds
    )


def _wanted_clusters(clusters: int | str, max_clusters: int) -> int | None:
    if isinstance(clusters, str):
        if clusters.strip().lower() == "auto":
            if max_clusters < 1:
                raise AnalysisError(f"the largest number of clusters must be 1 or more, not {max_clusters}")
            return None
        if not clusters.strip().isdecimal():
            raise AnalysisError(f"clusters must be 'auto' or a whole number, not {clusters!r}")
        clusters = int(clusters)
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 1:
        raise AnalysisError(f"clusters must be 'auto' or a whole number of 1 or more, not {clusters!r}")
    return int(clusters)


def _thumbs(maps: np.ndarray) -> np.ndarray:
    small = resize_maps(maps, THUMB_SIZE)
    peak = small.reshape(len(small), -1).max(1)[:, None, None]
    scaled = np.divide(small, peak, out=np.zeros_like(small), where=peak > 0)
    return np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def cluster_statistics(display: np.ndarray, features: np.ndarray, labels: np.ndarray):
    """Per-cluster :class:`ClusterStats` (without flags) and the ``(K, S, S)`` mean maps, from the maps at
    display size ``(N, S, S)``, the features and the labels."""
    count, size = len(display), display.shape[-1]
    clusters = int(labels.max()) + 1 if count else 0
    grid = (np.arange(size) + 0.5) / size
    band = max(1, round(BORDER_BAND * size))
    border = np.ones((size, size), bool)
    border[band:-band, band:-band] = False
    centre_all = features.mean(0)
    class_spread = float(np.linalg.norm(features - centre_all, axis=1).mean())
    flat = display.reshape(count, -1)
    top = max(1, round(0.1 * flat.shape[1]))
    totals = flat.sum(1)
    top_mass = np.partition(flat, flat.shape[1] - top, axis=1)[:, -top:].sum(1)
    concentration = np.divide(top_mass, totals, out=np.full(count, np.nan), where=totals > 0)
    sums = np.zeros((clusters, size, size), np.float64)
    np.add.at(sums, labels, display)
    sizes = np.bincount(labels, minlength=clusters)
    mean_maps = (sums / np.maximum(sizes, 1)[:, None, None]).astype(np.float32)
    stats = []
    for index in range(clusters):
        members = np.flatnonzero(labels == index)
        mean = mean_maps[index].astype(np.float64)
        located = _above(mean, 0.5)  # where the evidence lies: above the floor every map shares
        mass = located.sum()
        weights = located / mass if mass > 0 else np.full_like(mean, 1.0 / mean.size)
        cx, cy = float((weights.sum(0) * grid).sum()), float((weights.sum(1) * grid).sum())
        spread = float(np.sqrt((weights * ((grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2)).sum()))
        overlap = None
        if clusters > 1 and count > len(members):
            rest = (sums.sum(0) - sums[index]) / (count - len(members))
            own, theirs = _above(mean, 0.5), _above(rest, 0.5)
            denominator = np.linalg.norm(own) * np.linalg.norm(theirs)
            overlap = float((own * theirs).sum() / denominator) if denominator > 0 else 0.0
        peak = _above(mean, PEAK_QUANTILE)
        peak_mass = peak.sum()
        own = features[members]
        spread_own = float(np.linalg.norm(own - own.mean(0), axis=1).mean())
        values = concentration[members]
        stats.append(
            ClusterStats(
                index=index,
                members=members,
                share=len(members) / count,
                centre=(cx, cy),
                spread=spread,
                border_share=float(peak[border].sum() / peak_mass) if peak_mass > 0 else 0.0,
                concentration=float(np.nanmean(values)) if np.isfinite(values).any() else 0.0,
                overlap=overlap,
                tightness=spread_own / class_spread if class_spread > 0 else 0.0,
            )
        )
    return stats, mean_maps


def _above(picture: np.ndarray, quantile: float) -> np.ndarray:
    """What ``picture`` holds above its own ``quantile`` (0 elsewhere)."""
    return np.clip(picture - np.quantile(picture, quantile), 0.0, None)


def flag_clusters(stats: list[ClusterStats]) -> None:
    """Set ``flagged`` and ``reasons`` of each cluster, in place.

    A cluster is flagged when its evidence lies on the image border (:data:`BORDER_SHARE` of its mass, and
    :data:`BORDER_RATIO` times the other clusters' share), or when it lies away from where the class's other
    clusters look (:data:`OFF_LOCATION_OVERLAP`) and the cluster is small (:data:`SMALL_SHARE`) or tight
    (:data:`TIGHT_RATIO`): the pattern of a shortcut (a tag, a watermark, a frame) that a part of the class
    shares. Small and tight are listed as reasons of a flagged cluster, never flags on their own."""
    for cluster in stats:
        cluster.reasons, cluster.flagged = [], False
        others = [other for other in stats if other is not cluster]
        rest_border = sum(o.border_share * o.size for o in others) / sum(o.size for o in others) if others else None
        on_border = cluster.border_share >= BORDER_SHARE and (
            rest_border is None or cluster.border_share >= BORDER_RATIO * rest_border
        )
        away = cluster.overlap is not None and cluster.overlap < OFF_LOCATION_OVERLAP
        small = bool(others) and cluster.share <= SMALL_SHARE
        tight = cluster.tightness <= TIGHT_RATIO
        cluster.flagged = bool(on_border or (away and (small or tight)))
        if not cluster.flagged:
            continue
        if on_border:
            compared = f" (the other clusters: {rest_border:.0%})" if rest_border is not None else ""
            cluster.reasons.append(
                f"evidence on the image border: {cluster.border_share:.0%} of its strongest part lies within "
                f"{BORDER_BAND:.1%} of the edges{compared}"
            )
        if away:
            x, y = cluster.centre
            cluster.reasons.append(
                f"evidence away from where the class's other clusters look: its mean map overlaps theirs by "
                f"{cluster.overlap:.2f} (cosine), centred at x {x:.2f}, y {y:.2f} of the image"
            )
        if small:
            cluster.reasons.append(f"small: {cluster.size} map(s), {cluster.share:.0%} of the class")
        if tight:
            cluster.reasons.append(
                f"tight: its maps lie {1 / max(cluster.tightness, 1e-9):.1f}x closer to their centre than the "
                "class's maps to theirs"
            )
