import threading
import time

from shared.wiring import once


def test_once_builds_a_single_instance_under_concurrent_first_calls():
    built = []

    @once
    def service():
        time.sleep(0.05)  # a slow cold start, as when clients are created
        built.append(object())
        return built[-1]

    results = []
    threads = [threading.Thread(target=lambda: results.append(service())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and all(result is built[0] for result in results)
