"""SparseBatch: construction, reading, persistence and its invariants."""

import numpy as np
import pytest

from sparse_ir.errors import InputError
from sparse_ir.sparse_batch import SparseBatch

VOCAB = ("[PAD]", "cat", "dog", "fish", "##s")


def test_from_dicts_and_back():
    batch = SparseBatch.from_dicts(
        [{"dog": 1.5, "cat": 0.25}, {}, {"##s": 2.0}], VOCAB, ids=["a", "b", "c"]
    )
    assert batch.indptr.tolist() == [0, 2, 2, 3]
    assert batch.indices.tolist() == [1, 2, 4]  # ascending term ids within a row
    assert batch.values.dtype == np.float32
    assert batch.to_dicts() == [{"cat": 0.25, "dog": 1.5}, {}, {"##s": 2.0}]
    assert batch.ids == ("a", "b", "c")
    assert len(batch) == 3 and batch.nnz == 3


def test_integer_dicts_become_impacts():
    batch = SparseBatch.from_dicts([{"dog": 3, "cat": 1}], VOCAB)
    assert batch.is_quantized and batch.values.dtype == np.int32


def test_unknown_token_is_an_error_or_ignored_on_request():
    with pytest.raises(InputError, match="'bird' is not in the vocabulary"):
        SparseBatch.from_dicts([{"bird": 1.0}], VOCAB)
    batch = SparseBatch.from_dicts([{"bird": 1.0, "cat": 1.0}], VOCAB, unknown="ignore")
    assert batch.to_dicts() == [{"cat": 1.0}]


def test_non_numeric_weight_is_refused():
    with pytest.raises(InputError, match="not a number"):
        SparseBatch.from_dicts([{"cat": "1.0"}], VOCAB)


def test_decode_orders_by_weight_then_vocab():
    batch = SparseBatch.from_dicts([{"fish": 1.0, "cat": 2.0, "dog": 1.0}], VOCAB)
    assert batch.decode(0) == [("cat", 2.0), ("dog", 1.0), ("fish", 1.0)]
    assert batch.decode(0, top_k=1) == [("cat", 2.0)]
    with pytest.warns(DeprecationWarning, match="top_k"):
        assert batch.decode(0, top=None) == batch.decode(0, top_k=None)


@pytest.mark.parametrize(
    "indptr, indices, values, message",
    [
        ([1, 2], [1], [1.0], "start at 0"),
        ([0, 2], [1], [1.0], "indptr ends at 2"),
        ([0, 1], [9], [1.0], "outside the vocabulary"),
        ([0, 2], [2, 1], [1.0, 1.0], "strictly ascending"),
        ([0, 2], [1, 1], [1.0, 1.0], "strictly ascending"),
        ([0, 1], [1], [np.nan], "NaN or infinite"),
        ([0, 1], [1], [np.inf], "NaN or infinite"),
        ([0, 1], [1], [-1.0], "negative weight"),
    ],
)
def test_invalid_csr_is_refused(indptr, indices, values, message):
    with pytest.raises(InputError, match=message):
        SparseBatch(np.array(indptr), np.array(indices), np.array(values, np.float32), VOCAB)


def test_rows_may_restart_term_order():
    batch = SparseBatch(np.array([0, 2, 4]), np.array([2, 3, 1, 2]), np.ones(4, np.float32), VOCAB)
    assert batch.row(1)[0].tolist() == [1, 2]


def test_save_load_round_trip(tmp_path):
    batch = SparseBatch.from_dicts(
        [{"dog": 1.5, "cat": 0.25}, {"fish": 3.0}], VOCAB, ids=["é1", "2"]
    )
    batch.save(tmp_path / "b.npz")
    loaded = SparseBatch.load(tmp_path / "b.npz")
    assert loaded.to_dicts() == batch.to_dicts()
    assert loaded.ids == ("é1", "2") and loaded.vocab == VOCAB
    assert not list(tmp_path.glob("*.tmp-*"))


def test_load_refuses_garbage_and_other_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="junk.npz: unreadable SparseBatch"):
        SparseBatch.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(InputError, match="not a SparseBatch file"):
        SparseBatch.load(tmp_path / "other.npz")
    np.savez(tmp_path / "pickled.npz", indptr=np.array([None, 1], dtype=object))
    with pytest.raises(InputError):
        SparseBatch.load(tmp_path / "pickled.npz")


def test_select_and_concatenate():
    batch = SparseBatch.from_dicts(
        [{"cat": 1.0}, {"dog": 2.0}, {"fish": 3.0}], VOCAB, ids=["a", "b", "c"]
    )
    picked = batch.select([2, 0])
    assert picked.ids == ("c", "a") and picked.to_dicts() == [{"fish": 3.0}, {"cat": 1.0}]
    joined = SparseBatch.concatenate([picked, batch.select([1])])
    assert joined.ids == ("c", "a", "b")
    assert joined.to_dicts() == [{"fish": 3.0}, {"cat": 1.0}, {"dog": 2.0}]


def test_to_scipy_matches_dicts():
    batch = SparseBatch.from_dicts([{"cat": 1.0, "##s": 0.5}], VOCAB)
    dense = batch.to_scipy().toarray()
    assert dense.shape == (1, 5) and dense[0, 1] == 1.0 and dense[0, 4] == 0.5
