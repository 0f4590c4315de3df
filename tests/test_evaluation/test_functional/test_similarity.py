"""Tests of the shared chunker (similarity_chunks, rows_per_chunk)."""
import torch

from mdrl_plugin.evaluation.functional import rows_per_chunk, similarity_chunks


def test_rows_per_chunk():
    assert rows_per_chunk(40, 100) == 2
    assert rows_per_chunk(40, 10) == 1  # at least one row
    assert rows_per_chunk(0, 10) == 10


def test_chunks_follow_order_and_size():
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    gallery_t = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # [D, G]
    chunks = list(similarity_chunks(query, gallery_t, 2,
                                    order=torch.tensor([2, 0, 1])))
    assert [rows.tolist() for rows, _ in chunks] == [[2, 0], [1]]
    assert [block.tolist() for _, block in chunks] == [
        [[4.0, 6.0], [1.0, 2.0]], [[3.0, 4.0]]]
    # without gallery_t the query rows are the similarity rows
    rows, block = next(similarity_chunks(query, None, 5))
    assert rows.tolist() == [0, 1, 2] and torch.equal(block, query)
