"""Pure helpers of the dead-letter path: the size the server weighs, bounded labels."""

from services.runtime.metrics import subject_label
from services.runtime.natsconn import message_size


def test_message_size_counts_the_header_block_as_the_client_writes_it():
    # "NATS/1.0\r\n" + "Nats-Msg-Id: abc\r\n" + "\r\n"
    assert message_size(b"12345", {"Nats-Msg-Id": "abc"}) == 5 + 10 + 18 + 2
    assert message_size(b"12345", None) == 5
    assert message_size(b"", {"A": "é"}) == 10 + len("A: é\r\n".encode()) + 2


def test_subject_labels_drop_ids_and_keep_names():
    booking = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    assert subject_label(f"timers.fired.booking.expiry.{booking}") == (
        "timers.fired.booking.expiry.*"
    )
    assert subject_label("booking.created") == "booking.created"
