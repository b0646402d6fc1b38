"""Planted PII values and look-alikes that are not PII, shared by the PII tests."""

PLANTED = {
    "email": ["jane.doe@example.org", "ops+alerts@mail.hospital-7.co.uk"],
    "phone": ["+1 (555) 123-4567", "030 1234 5678"],
    "credit_card": ["4111 1111 1111 1111", "5500-0000-0000-0004"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"],
    "us_ssn": ["123-45-6789"],
    "ip_address": ["192.168.1.20", "2001:db8::1"],
}
DECOYS = ["card 4111-1111-1111-1112", "version 3.11.7", "2020-01-15", "000-12-3456", "999.1.1.1",
          "DE00 0000 0000 0000 0000 00", "12:30", "ISBN 0-306-40615-2", "ISBN 978-0-306-40615-7",
          "15.01.2020", "01/15/2020 10:30", "build 10.0.19041.1", "1,234,567 readers",
          "https://example.org/2021/03/15/post-42"]
# Phone numbers in other formats, each counted once (the planted set above stays fixed).
MORE_PHONES = ["+44 20 7946 0958", "+49 30 12345678", "(212) 555-0199", "020 7946 0958",
               "1-800-555-0199", "0171 1234567"]
