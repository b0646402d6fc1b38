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
          "DE00 0000 0000 0000 0000 00", "12:30"]
