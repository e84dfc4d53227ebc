import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster, wait_until


def running_cluster(root, extra_config=""):
    """Three brokers (each config ending with `extra_config`), yielded once all registered."""
    c = Cluster(root, brokers=3, extra_config=extra_config)
    c.start_all()
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        wait_until("3 registered brokers", lambda: len(admin.list_topics(timeout=2).brokers) == 3, cluster=c)
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path)


def create_topic(cluster, name, partitions=3, replication=3):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication)])
    futures[name].result(timeout=30)

    def leaders_known():
        meta = admin.list_topics(topic=name, timeout=2).topics[name]
        return meta.error is None and len(meta.partitions) == partitions and all(
            p.leader >= 0 for p in meta.partitions.values()
        )

    wait_until(f"leaders of {name}", leaders_known, cluster=cluster)
