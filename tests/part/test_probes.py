"""Frozen-feature protocols on feature tensors (``part.evaluation.probes``) and the feature cache
(``part.evaluation.features``): the kNN vote against a hand computation, the linear probe
against scikit-learn's LogisticRegression, kappa and chance levels, cache hits and stale caches."""
import numpy as np
import pytest
import torch

from part.core.backbone import ViTEncoder
from part.evaluation.features import FrozenEncoder, cached_features, encode_tensor, extract_features
from part.evaluation.probes import chance_levels, cohen_kappa, knn_predict, knn_scores, linear_probe
from part.registry import get_modality


def _hand_knn(train, labels, query, n_classes, k, t):
    """The DINO vote, one query at a time with numpy: cosine similarities, the k largest,
    weight exp(s / t) added to each neighbour's class."""
    tr = train / np.linalg.norm(train, axis=1, keepdims=True)
    scores = np.zeros((len(query), n_classes))
    for i, q in enumerate(query):
        sim = tr @ (q / np.linalg.norm(q))
        for j in np.argsort(-sim, kind="stable")[:k]:
            scores[i, labels[j]] += np.exp(sim[j] / t)
    return scores


@pytest.mark.parametrize("k,t,chunk", [(3, 0.5, 1), (3, 0.07, 4), (20, 0.07, 1024)])
def test_knn_vote_matches_a_hand_computation(k, t, chunk):
    rng = np.random.default_rng(0)
    train, query = rng.normal(size=(15, 4)), rng.normal(size=(9, 4))
    labels = rng.integers(0, 3, 15)
    expected = _hand_knn(train, labels, query, 3, min(k, 15), t)
    got = knn_scores(torch.tensor(train), torch.tensor(labels), torch.tensor(query), 3, k, t, chunk)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)
    pred, probs = knn_predict(torch.tensor(train), torch.tensor(labels), torch.tensor(query), 3, k, t, chunk)
    np.testing.assert_array_equal(pred, expected.argmax(1))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_knn_small_example_by_hand():
    # bank: two items of class 0 along +x, one of class 1 along +y; the query sits at 30 degrees
    train = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    query = torch.tensor([[np.cos(np.pi / 6), np.sin(np.pi / 6)]], dtype=torch.float32)
    scores = knn_scores(train, labels, query, 2, k=2, temperature=1.0)
    # the two nearest are the class-0 items (cos 30 deg = 0.866 each); class 1 (cos 60 deg) is 3rd
    assert scores[0, 0].item() == pytest.approx(2 * np.exp(np.cos(np.pi / 6)), rel=1e-5)
    assert scores[0, 1].item() == 0.0
    scores = knn_scores(train, labels, query, 2, k=3, temperature=1.0)
    assert scores[0, 1].item() == pytest.approx(np.exp(0.5), rel=1e-5)


def _blobs(n, seed, d=6, classes=3, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=3.0, size=(classes, d))
    y = rng.integers(0, classes, n)
    return (centres[y] + spread * rng.normal(size=(n, d)) + 5.0).astype(np.float32), y


def test_linear_probe_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(300, 0, spread=2.5)
    xt, yt = _blobs(200, 1, spread=2.5)
    wd = 1e-2
    probe = linear_probe(torch.tensor(x), torch.tensor(y), 3, weight_decay=wd)
    pred, probs = probe.predict(torch.tensor(xt))
    scaler = StandardScaler().fit(x.astype(np.float64))
    clf = LogisticRegression(C=1.0 / (len(x) * wd), tol=1e-10, max_iter=5000).fit(scaler.transform(x), y)
    sk_pred = clf.predict(scaler.transform(xt))
    assert (pred == sk_pred).mean() >= 0.99
    np.testing.assert_allclose(probe.weight.numpy(), clf.coef_, atol=2e-3)
    np.testing.assert_allclose(probs, clf.predict_proba(scaler.transform(xt)), atol=2e-3)
    assert abs((pred == yt).mean() - (sk_pred == yt).mean()) <= 0.01


def test_linear_probe_separates_separable_data_and_is_deterministic():
    x, y = _blobs(120, 2, spread=0.3)
    a = linear_probe(torch.tensor(x), torch.tensor(y), 3)
    b = linear_probe(torch.tensor(x), torch.tensor(y), 3)
    assert (a.predict(torch.tensor(x))[0] == y).all()
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_linear_probe_class_weights_shift_the_decision_towards_the_rare_class():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0.0, 1.0, (190, 1)), rng.normal(1.0, 1.0, (10, 1))]).astype(np.float32)
    y = np.array([0] * 190 + [1] * 10)
    grid = torch.linspace(-3, 4, 200).unsqueeze(1)
    plain = linear_probe(torch.tensor(x), torch.tensor(y), 2).predict(grid)[0].sum()
    weighted = linear_probe(torch.tensor(x), torch.tensor(y), 2,
                            class_weights=torch.tensor([200 / 190 / 2, 200 / 10 / 2])).predict(grid)[0].sum()
    assert weighted > plain  # more of the line is called the rare class


def test_cohen_kappa_matches_sklearn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(4)
    y, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    p[:150] = y[:150]
    assert cohen_kappa(y, p, 5) == pytest.approx(cohen_kappa_score(y, p), rel=1e-12)
    assert cohen_kappa(np.zeros(4, int), np.zeros(4, int), 5) == 0.0


def test_chance_levels_use_the_training_majority_scored_on_the_test_labels():
    chance = chance_levels(np.array([2, 2, 2, 1, -1, -1, -1]), np.array([2, 0, 1, 2, -1]), ["W", "N1", "N2"])
    assert chance["majority_class"] == "N2"
    assert chance["accuracy"] == pytest.approx(2 / 4)  # -1 left out
    assert chance["kappa"] == 0.0 and chance["balanced_accuracy"] == pytest.approx(1 / 3)
    assert "majority class 'N2'" in chance["rule"]


# ----------------------------------------------------------------------------- features

@pytest.fixture(scope="module")
def frozen():
    torch.manual_seed(0)
    modality = get_modality("image", image_size=8, channels=1, patch_size=2)
    encoder = ViTEncoder(16, 1, 2)
    return FrozenEncoder(modality, modality.tokenizer(16), encoder)


def test_frozen_features_are_the_mean_of_the_patch_tokens(frozen):
    x = torch.randn(5, 1, 8, 8)
    feats = encode_tensor(frozen, x, 2, torch.device("cpu"))
    with torch.no_grad():
        patches, _ = frozen.modality.grid(x)
        z = frozen.encoder(frozen.tokenizer(patches))
    assert feats.shape == (5, 16)
    torch.testing.assert_close(feats, z[:, 1:].mean(1))
    cls = FrozenEncoder(frozen.modality, frozen.tokenizer, frozen.encoder, pooling="cls")
    torch.testing.assert_close(encode_tensor(cls, x, 5, torch.device("cpu")), z[:, 0])
    with pytest.raises(ValueError, match="pooling='max'"):
        FrozenEncoder(frozen.modality, frozen.tokenizer, frozen.encoder, pooling="max")


def test_feature_cache_is_used_and_a_stale_one_rebuilt(frozen, tmp_path):
    x = torch.randn(6, 1, 8, 8)
    data = list(zip(x, [0, 1, 2, 0, 1, 2]))
    labels = np.array([0, 1, 2, 0, 1, 2])
    ckpt = tmp_path / "pretrain.pt"
    ckpt.write_bytes(b"weights v1")
    calls, said = [], []

    def extract():
        calls.append(1)
        return extract_features(frozen, data, 4, torch.device("cpu"))
    cache = tmp_path / "features" / "test.pt"
    f1, y1 = cached_features(cache, ckpt, labels, extract, said.append)
    f2, y2 = cached_features(cache, ckpt, labels, extract, said.append)
    assert len(calls) == 1 and torch.equal(f1, f2) and y2.tolist() == labels.tolist()
    torch.testing.assert_close(f1, encode_tensor(frozen, x, 6, torch.device("cpu")))
    ckpt.write_bytes(b"weights v2")  # a retrained encoder: the cache must not be used
    cached_features(cache, ckpt, labels, extract, said.append)
    assert len(calls) == 2 and "stale (checkpoint_sha256 changed)" in said[-1]
    with pytest.raises(ValueError, match="differ from the dataset's 6"):
        cached_features(cache, ckpt, labels[::-1].copy(), extract, said.append)
    cached_features(cache, ckpt, labels, extract, said.append, precision="bf16")
    assert len(calls) == 4 and "stale (precision changed)" in said[-1]
    cache.write_bytes(b"not a torch file")
    cached_features(cache, ckpt, labels, extract, said.append)
    assert len(calls) == 5 and "unreadable" in said[-1]


def test_extraction_reads_batches_directly_where_the_dataset_can(frozen):
    x, y = torch.randn(7, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5, 6])
    reads = []

    class Batched(torch.utils.data.TensorDataset):
        def read_batch(self, items):
            reads.append(list(items))
            return self.tensors[0][items], self.tensors[1][items]
    direct, labels = extract_features(frozen, Batched(x, y), 3, torch.device("cpu"))
    loaded, _ = extract_features(frozen, list(zip(x, y.tolist())), 3, torch.device("cpu"))
    assert reads == [[0, 1, 2], [3, 4, 5], [6]] and labels.tolist() == y.tolist()
    torch.testing.assert_close(direct, loaded)
