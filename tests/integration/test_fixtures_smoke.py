"""The shared fixtures reach real services: a throwaway vhost, a throwaway database."""
from __future__ import annotations

import pika
from sqlalchemy import create_engine, text

from tests.amqp_helpers import amqp_queue_messages, connect


def test_fresh_vhost_carries_a_message(fresh_vhost_uri: str) -> None:
    assert "/sdj-test-" in fresh_vhost_uri
    connection = connect(fresh_vhost_uri)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("smoke", durable=False)
        channel.basic_publish(
            "", "smoke", "送到家".encode(),
            pika.BasicProperties(headers={"probe": "yes"}),
        )
    finally:
        connection.close()

    [(body, _properties, headers)] = amqp_queue_messages(fresh_vhost_uri, "smoke")
    assert body.decode() == "送到家"
    assert headers == {"probe": "yes"}
    assert amqp_queue_messages(fresh_vhost_uri, "smoke") == []


def test_postgres_database_is_usable(postgres_url: str) -> None:
    assert "/sdj_test_" in postgres_url
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE smoke (id serial PRIMARY KEY, note text NOT NULL)"))
            conn.execute(text("INSERT INTO smoke (note) VALUES (:note)"), {"note": "李阿姨"})
        with engine.connect() as conn:
            assert conn.execute(text("SELECT note FROM smoke")).scalars().all() == ["李阿姨"]
    finally:
        engine.dispose()
