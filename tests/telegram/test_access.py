"""Who may do what, where (tgtrader/telegram/access.py): the rules without Telegram."""

from __future__ import annotations

from tgtrader.telegram.access import Access, Role

ALICE, BOB, READER, MALLORY, GROUP = 777, 888, 333, 999, -4001


def test_private_chats_on_the_chat_list_keep_working_without_a_user_list() -> None:
    access = Access.of([ALICE])
    assert access.role(ALICE, ALICE, private=True) is Role.TRADE
    assert access.role(BOB, BOB, private=True) is Role.NONE
    assert access.warnings() == []


def test_in_a_group_only_listed_people_count() -> None:
    access = Access.of([ALICE, GROUP], users=[BOB], readonly=[READER])
    assert access.role(GROUP, ALICE, private=False) is Role.TRADE  # her private chat is allowed
    assert access.role(GROUP, BOB, private=False) is Role.TRADE
    assert access.role(GROUP, READER, private=False) is Role.READ
    assert access.role(GROUP, MALLORY, private=False) is Role.NONE
    assert access.role(-5, ALICE, private=False) is Role.NONE  # a group nobody allowed
    assert access.warnings() == []


def test_a_read_only_user_gets_alerts_in_their_private_chat_but_cannot_trade() -> None:
    access = Access.of([ALICE, READER], readonly=[READER])
    assert READER in access.recipients()
    assert access.role(READER, READER, private=True) is Role.READ


def test_an_open_group_is_warned_about_and_upgrades_are_followed() -> None:
    access = Access.of([GROUP])
    assert access.role(GROUP, MALLORY, private=False) is Role.TRADE  # as before user lists: warned
    assert "ANY member can trade" in access.warnings()[0]
    access.migrations[GROUP] = -1004001
    assert access.recipients() == [-1004001] and access.chat_allowed(-1004001)
