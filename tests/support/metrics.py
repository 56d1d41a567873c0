"""Reading ``GET /metrics`` in tests as Prometheus does: one scrape, its samples by name.

The metrics' own tests (``tests/api/test_metrics.py``) and those of the queue's figures
(``tests/api/test_expectations.py``: questions waiting, urgent, overdue) scrape the app the
same way, through Flask's test client from 127.0.0.1, parsed with prometheus_client's own
parser. Counters live in the process-wide registry, so a test reads a difference.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape from 127.0.0.1, by name and sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly these labels in a scrape; 0.0 where it has none."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
