from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from streams.kafka.faust_transport import TunedConsumerThread, TunedTransport
from streams.settings import Settings
from streams.worker.app import Pipeline


async def test_worker_consumer_gets_fetch_wait_and_range_assignor(tmp_path):
    settings = Settings(bootstrap_servers="127.0.0.1:1", state_dir=tmp_path, fetch_max_wait_ms=37, web_port=0)
    pipeline = Pipeline(settings)
    assert isinstance(pipeline.app.transport, TunedTransport)
    thread = pipeline.app.consumer._thread
    assert isinstance(thread, TunedConsumerThread)
    consumer = thread._create_worker_consumer(pipeline.app.transport)
    # the private attributes aiokafka reads in start(); this fails loudly if a new version renames them
    assert consumer._fetch_max_wait_ms == 37
    assert consumer._partition_assignment_strategy == (RangePartitionAssignor,)
