"""The shared fixtures reach real services: a throwaway vhost, a throwaway database."""
from __future__ import annotations

import os

import pika
from sqlalchemy import create_engine, text

from songdaojia.vhosts import rabbitmqctl
from tests.amqp_helpers import amqp_queue_messages, connect
from tests.conftest import DEFAULT_AMQP, Vhosts


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


def test_the_vhost_pool_hands_out_each_vhost_once_and_deletes_them_all() -> None:
    def existing() -> set[str]:
        return set(rabbitmqctl("-q", "list_vhosts").split())

    pool = Vhosts(os.environ.get("SDJ_TEST_AMQP") or DEFAULT_AMQP)
    try:
        taken = [pool.take() for _ in range(Vhosts.AHEAD + 1)]  # the ninth makes the next batch
        names = [name for name, _ in taken]
        assert len(set(names)) == len(names) and set(names) <= existing()
        for name, uri in taken:
            assert uri.endswith("/" + name)
        for name in names[:Vhosts.BEHIND - 1]:
            pool.give_back(name)
        assert set(names[:Vhosts.BEHIND - 1]) <= existing()  # deleted with the next batch, not yet
        pool.give_back(names[Vhosts.BEHIND - 1])
        assert not set(names[:Vhosts.BEHIND]) & existing()
        pool.give_back(names[-1])
        made = set(names) | {name for name, _ in pool.unused}
    finally:
        pool.close()
    assert not made & existing()  # given back or never handed out: all gone at the session's end


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
