"""The standalone (filesystem) queue hands out messages in publish order, however many."""

from __future__ import annotations

from pathlib import Path

from broker import BrokerConfig, enqueue_training, make_train_app
from state.settings import Settings


def test_filesystem_queue_is_first_in_first_out(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.ensure_dirs()
    app = make_train_app(settings.broker_config(), "train")
    published = [
        f"job-{i:05d}" for i in range(1500)
    ]  # many within one millisecond, across 999 -> 1000
    for job_id in published:
        enqueue_training(app, job_id, "train")
    received = []
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("train", no_ack=True)
        while len(received) < len(published):
            message = queue.get(timeout=5)
            received.append(
                message.payload[0]
                if isinstance(message.payload, list)
                else message.headers["argsrepr"]
            )
        queue.close()
    assert [_job_id(r) for r in received] == published


def _job_id(args: object) -> str:
    return str(args).strip("[]()' ,")


def test_old_kombu_names_are_read_first_by_number() -> None:
    from broker.fifo_filesystem import message_name, order_key

    old = ["1000_b.train.msg", "999_a.train.msg"]
    new = [message_name("train") for _ in range(3)]
    assert sorted([new[2], *old, new[0], new[1]], key=order_key) == [
        "999_a.train.msg",
        "1000_b.train.msg",
        *new,
    ]
    assert BrokerConfig("filesystem://").transport == "broker.fifo_filesystem:Transport"
