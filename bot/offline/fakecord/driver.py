"""The driver: what members do (commands, clicks, modals, posts) and what admins change."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from bot.offline.fakecord import interactions as ix
from bot.offline.fakecord.config import FakeDiscordConfig
from bot.offline.fakecord.errors import DriverError
from bot.offline.fakecord.gateway import Gateway
from bot.offline.fakecord.interactions import InteractionHandle
from bot.offline.fakecord.rest import RestApi
from bot.offline.fakecord.state import (
    ADMINISTRATOR,
    DM,
    GUILD_TEXT,
    PRIVATE_THREAD,
    SEND_MESSAGES,
    Channel,
    Guild,
    Member,
    Message,
    User,
    World,
    walk,
)

Actor = Member | User
Files = Sequence[tuple[str, bytes]]
ModalValue = str | list[str] | Files


class Driver:
    """Mixed into FakeDiscord; every method acts as a member or admin would in a client."""

    world: World
    gateway: Gateway
    rest: RestApi
    config: FakeDiscordConfig

    # -- setting the scene ---------------------------------------------------------------------

    async def create_guild(self, name: str = "Test Guild", *, premium_tier: int = 0) -> Guild:
        guild = self.world.add_guild(name, premium_tier)
        await self.gateway.guild_create(guild.id)
        return guild

    async def create_channel(
        self,
        guild: Guild,
        name: str = "general",
        *,
        bot_can_send: bool = True,
        kind: int = GUILD_TEXT,
        nsfw: bool = False,
    ) -> Channel:
        """A text channel, or (`kind`) a voice or stage channel (with its text chat) or a
        forum (whose posts are threads: `create_forum_post`); `nsfw`: age-restricted."""
        channel = self.world.add_channel(
            guild, name, bot_can_send=bot_can_send, kind=kind, nsfw=nsfw
        )
        await self.gateway.dispatch("CHANNEL_CREATE", self.world.channel_payload(channel))
        return channel

    async def create_thread(
        self, parent: Channel, name: str, owner: Actor, *, private: bool = False
    ) -> Channel:
        """A member opens a thread under a text channel (the bot is not in it yet)."""
        user = self._user(owner, parent)
        thread = self.world.add_thread(parent, name, user, private=private)
        await self._thread_event("THREAD_CREATE", thread, newly_created=True)
        return thread

    async def create_forum_post(
        self, forum: Channel, name: str, owner: Actor, content: str = "a post"
    ) -> Channel:
        """A member's forum post: a thread under the forum, opened by a starter message
        that shares the thread's id."""
        user = self._user(owner, forum)
        thread = self.world.add_thread(forum, name, user)
        self.world.add_message(thread, user, ident=thread.id, content=content)
        await self._thread_event("THREAD_CREATE", thread, newly_created=True)
        return thread

    async def set_thread_archived(self, thread: Channel, archived: bool = True) -> None:
        """Archive a thread (as Discord does after its inactivity window) or unarchive it."""
        if not thread.is_thread:
            raise DriverError(f"{thread.name} is not a thread")
        thread.archived = archived
        thread.archive_timestamp = self.world.now_iso()
        await self._thread_event("THREAD_UPDATE", thread)

    async def _thread_event(self, event: str, thread: Channel, **extra: Any) -> None:
        # The bot gets a thread's events when it may see the thread (a private one: as a
        # member only).
        visible = thread.type != PRIVATE_THREAD or self.world.bot.id in thread.thread_members
        if visible:
            payload = {**self.world.channel_payload(thread), **extra}
            await self.gateway.dispatch(event, payload)

    async def create_user(self, name: str = "member", *, dms_closed: bool = False) -> User:
        return self.world.add_user(name, dms_closed=dms_closed)

    async def create_member(
        self, guild: Guild, name: str = "member", *, admin: bool = False, dms_closed: bool = False
    ) -> Member:
        user = self.world.add_user(name, dms_closed=dms_closed)
        return self.world.add_member(guild, user, admin=admin)

    async def dm_channel(self, user: Actor) -> Channel:
        return self.world.dm_channel(user.user if isinstance(user, Member) else user)

    async def set_dms_closed(self, user: Actor, closed: bool = True) -> None:
        (user.user if isinstance(user, Member) else user).dms_closed = closed

    async def set_premium_tier(self, guild: Guild, tier: int) -> None:
        guild.premium_tier = tier
        await self.gateway.dispatch("GUILD_UPDATE", self.world.guild_update_payload(guild))

    async def set_bot_can_send(self, channel: Channel, allowed: bool) -> None:
        if allowed:
            channel.deny.pop(self.world.bot.id, None)
        else:
            channel.deny[self.world.bot.id] = SEND_MESSAGES
        await self.gateway.dispatch("CHANNEL_UPDATE", self.world.channel_payload(channel))

    async def set_nsfw(self, channel: Channel, nsfw: bool = True) -> None:
        """An admin marks the channel age-restricted (or not); its threads follow it."""
        channel.nsfw = nsfw
        await self.gateway.dispatch("CHANNEL_UPDATE", self.world.channel_payload(channel))

    async def delete_channel(self, channel: Channel) -> None:
        channel.deleted = True
        if channel.is_thread:
            gone = {
                "id": str(channel.id),
                "guild_id": str(channel.guild_id),
                "parent_id": str(channel.parent_id),
                "type": channel.type,
            }
            await self.gateway.dispatch("THREAD_DELETE", gone)
            return
        await self.gateway.dispatch("CHANNEL_DELETE", self.world.channel_payload(channel))

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway session, as a restarting Discord node does; bots reconnect."""
        await self.gateway.close_all(code)

    def messages(self, channel: Channel, *, ephemeral: bool = False) -> list[Message]:
        """The channel as the fake sees it, oldest first (ephemeral replies only if asked)."""
        return self.world.visible_messages(channel, ephemeral=ephemeral)

    # -- members acting ----------------------------------------------------------------------

    async def post(
        self, member: Actor, channel: Channel, content: str = "", attachments: Files = ()
    ) -> Message:
        """A member posts a message (MESSAGE_CREATE goes out if the bot's intents ask)."""
        user = self._user(member, channel)
        stored = [self.world.store_attachment(channel, n, data) for n, data in attachments]
        message = self.world.add_message(channel, user, content=content, attachments=stored)
        payload = self.world.message_payload(message)
        if channel.guild_id is not None and isinstance(member, Member):
            payload["member"] = self.world.member_payload(member, with_user=False)
        await self.gateway.message_event("MESSAGE_CREATE", channel, payload)
        return message

    async def slash(
        self, member: Actor, channel: Channel, command: str, /, **options: Any
    ) -> InteractionHandle:
        """Run `/command [group] [sub]` with options; (name, bytes) for attachments. The
        first three are positional only, so a command may have an option named `channel`."""
        data, leaf, nest = self._command_data(member, channel, command, 1)
        resolved: dict[str, dict[str, Any]] = {}
        nest.extend(self._options(leaf, options, resolved, channel))
        if resolved:
            data["resolved"] = resolved
        return await self._dispatch(ix.COMMAND, member, channel, data)

    async def autocomplete(
        self,
        member: Actor,
        channel: Channel,
        command: str,
        focused: str,
        partial: str,
        **options: Any,
    ) -> InteractionHandle:
        data, leaf, nest = self._command_data(member, channel, command, 1)
        by_name = {option["name"]: option for option in leaf}
        target = by_name.get(focused)
        if target is None or not target.get("autocomplete"):
            raise DriverError(f"option {focused!r} of /{command} has no autocomplete")
        for name, value in options.items():
            if name not in by_name:
                raise DriverError(f"/{command} has no option {name!r}")
            nest.append({"name": name, "type": by_name[name]["type"], "value": value})
        nest.append({"name": focused, "type": target["type"], "value": partial, "focused": True})
        return await self._dispatch(ix.AUTOCOMPLETE, member, channel, data)

    async def context_menu(
        self, member: Actor, channel: Channel, name: str, target: Message | Actor
    ) -> InteractionHandle:
        kind = 3 if isinstance(target, Message) else 2
        data, _, _ = self._command_data(member, channel, name, kind)
        if isinstance(target, Message):
            data["target_id"] = str(target.id)
            data["resolved"] = {"messages": {str(target.id): self.world.message_payload(target)}}
        else:
            data["target_id"] = str(target.id)
            data["resolved"] = self._resolve_user(target)
        return await self._dispatch(ix.COMMAND, member, channel, data)

    async def click(self, member: Actor, message: Message, custom_id: str) -> InteractionHandle:
        """Press a button on a message."""
        component = self._component(message, custom_id)
        if component.get("type") != 2 or component.get("disabled"):
            raise DriverError(f"{custom_id!r} is not an enabled button")
        data = {"custom_id": custom_id, "component_type": 2}
        channel = self.world.channels[message.channel_id]
        return await self._dispatch(ix.COMPONENT, member, channel, data, message)

    async def select(
        self, member: Actor, message: Message, custom_id: str, values: list[str]
    ) -> InteractionHandle:
        """Pick values in a select menu on a message."""
        component = self._component(message, custom_id)
        if component.get("type") not in (3, 5, 6, 7, 8) or component.get("disabled"):
            raise DriverError(f"{custom_id!r} is not an enabled select")
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        options = {o.get("value", o.get("label")) for o in component.get("options") or []}
        if not low <= len(values) <= high or (options and not set(values) <= options):
            raise DriverError(f"{values} is not a valid choice for {custom_id!r}")
        channel = self.world.channels[message.channel_id]
        data = {"custom_id": custom_id, "component_type": component["type"], "values": values}
        return await self._dispatch(ix.COMPONENT, member, channel, data, message)

    async def submit_modal(
        self,
        member: Actor,
        channel: Channel,
        modal: InteractionHandle | str,
        values: dict[str, ModalValue],
    ) -> InteractionHandle:
        """Fill in and submit a modal the bot opened; files go into FileUpload fields."""
        opener = modal if isinstance(modal, InteractionHandle) else self._opener(modal)
        spec = (await opener.response()).modal  # waits for the bot to open it
        if spec is None:
            raise DriverError("that interaction was not answered with a modal")
        attachments: dict[str, dict[str, Any]] = {}
        rows = [self._submit_row(row, values, attachments, channel) for row in spec.components]
        unknown = set(values) - self._modal_ids(spec.components)
        if unknown:
            raise DriverError(f"the modal has no fields {sorted(unknown)}")
        data: dict[str, Any] = {"custom_id": spec.custom_id, "components": rows}
        if attachments:
            data["resolved"] = {"attachments": attachments}
        source = None
        if opener.source_message_id is not None:
            source = self.world.messages[opener.source_message_id]
        return await self._dispatch(ix.MODAL_SUBMIT, member, channel, data, source)

    # -- helpers ------------------------------------------------------------------------------

    def _user(self, member: Actor, channel: Channel) -> User:
        user = member.user if isinstance(member, Member) else member
        guild = self.world.guild_of(channel)
        if guild is not None and user.id not in guild.members:
            raise DriverError(f"{user.name} is not a member of {guild.name}")
        if channel.deleted:
            raise DriverError("the channel was deleted")
        return user

    def _command_data(
        self, member: Actor, channel: Channel, command: str, kind: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """The command's data dict, the leaf's option definitions, and where options go."""
        user = self._user(member, channel)
        parts = command.split() if kind == 1 else [command]
        scopes: list[int | None] = [channel.guild_id] if channel.guild_id is not None else []
        found: dict[str, Any] | None = None
        found_scope: int | None = None
        for scope in [*scopes, None]:
            for registered in self.rest.commands.get(scope, []):
                if registered["name"] == parts[0] and registered["type"] == kind:
                    found, found_scope = registered, scope
                    break
            if found is not None:
                break
        if found is None:
            raise DriverError(f"no command {parts[0]!r} of type {kind} is synced here")
        self._check_allowed(found, user, channel)
        data: dict[str, Any] = {"id": found["id"], "name": found["name"], "type": kind}
        if found_scope is not None:
            data["guild_id"] = str(found_scope)
        leaf: list[dict[str, Any]] = list(found.get("options") or [])
        nest: list[dict[str, Any]] = []
        data["options"] = nest
        for part in parts[1:]:
            step = next((o for o in leaf if o["name"] == part and o["type"] in (1, 2)), None)
            if step is None:
                raise DriverError(f"/{command}: no subcommand {part!r}")
            inner: list[dict[str, Any]] = []
            nest.append({"name": part, "type": step["type"], "options": inner})
            leaf, nest = list(step.get("options") or []), inner
        if any(o["type"] in (1, 2) for o in leaf):
            raise DriverError(f"/{command} needs a subcommand")
        if kind != 1:
            del data["options"]
        return data, leaf, nest

    def _check_allowed(self, command: dict[str, Any], user: User, channel: Channel) -> None:
        if channel.type == DM:
            contexts = command.get("contexts")
            if command.get("dm_permission") is False or (
                contexts is not None and 1 not in contexts
            ):
                raise DriverError(f"{command['name']!r} is not available in DMs")
            return
        needed = command.get("default_member_permissions")
        if needed is not None:
            perms = self.world.permissions(user.id, channel)
            if not perms & ADMINISTRATOR and perms & int(needed) != int(needed):
                raise DriverError(f"{user.name} cannot see {command['name']!r}")

    def _resolve_user(self, target: Actor) -> dict[str, Any]:
        user = target.user if isinstance(target, Member) else target
        resolved: dict[str, Any] = {"users": {str(user.id): user.payload()}}
        if isinstance(target, Member):
            member = self.world.member_payload(target, with_user=False)
            resolved["members"] = {str(user.id): member}
        return resolved

    def _options(
        self,
        definitions: list[dict[str, Any]],
        given: dict[str, Any],
        resolved: dict[str, dict[str, Any]],
        channel: Channel,
    ) -> list[dict[str, Any]]:
        known = {d["name"]: d for d in definitions}
        unknown = set(given) - set(known)
        if unknown:
            raise DriverError(f"no options named {sorted(unknown)}")
        out: list[dict[str, Any]] = []
        for name, definition in known.items():
            if name not in given:
                if definition.get("required"):
                    raise DriverError(f"option {name!r} is required")
                continue
            value, kind = given[name], definition["type"]
            choices = [c["value"] for c in definition.get("choices") or []]
            if choices and value not in choices:
                raise DriverError(f"{value!r} is not one of the choices of {name!r}")
            if kind == 11:
                filename, data = value
                limit = self.world.file_limit(channel)
                if len(data) > limit:
                    raise DriverError(f"{filename} is over the {limit}-byte upload limit")
                stored = self.world.store_attachment(channel, filename, data, ephemeral=True)
                payload = self.world.attachment_payload(stored)
                resolved.setdefault("attachments", {})[str(stored.id)] = payload
                value = str(stored.id)
            elif kind in (6, 9) and isinstance(value, Member | User):
                for key, entries in self._resolve_user(value).items():
                    resolved.setdefault(key, {}).update(entries)
                value = str(value.id)
            elif kind == 7 and isinstance(value, Channel):
                body = self.world.channel_payload(value, for_user=self.world.bot.id)
                resolved.setdefault("channels", {})[str(value.id)] = body
                value = str(value.id)
            out.append({"name": name, "type": kind, "value": value})
        return out

    def _component(self, message: Message, custom_id: str) -> dict[str, Any]:
        current = self.world.messages.get(message.id)
        if current is None or current.deleted:
            raise DriverError("that message is gone")
        found = (c for c in walk(current.components) if c.get("custom_id") == custom_id)
        component = next(found, None)
        if component is None:
            raise DriverError(f"no component {custom_id!r} on message {message.id}")
        return component

    def _opener(self, custom_id: str) -> InteractionHandle:
        for handle in reversed(list(self.rest.interactions.values())):
            if handle.modal is not None and handle.modal.custom_id == custom_id:
                return handle
        raise DriverError(f"the bot never opened a modal {custom_id!r}")

    @staticmethod
    def _modal_ids(rows: list[dict[str, Any]]) -> set[str]:
        found: set[str] = set()
        for row in rows:
            for item in [row.get("component") or {}, *(row.get("components") or [])]:
                if item.get("custom_id"):
                    found.add(str(item["custom_id"]))
        return found

    def _submit_row(
        self,
        row: dict[str, Any],
        values: dict[str, ModalValue],
        attachments: dict[str, dict[str, Any]],
        channel: Channel,
    ) -> dict[str, Any]:
        if row.get("type") == 18:
            inner = self._submit_item(row["component"], values, attachments, channel)
            return {"type": 18, "id": row.get("id"), "component": inner}
        if row.get("type") == 1:
            children = [
                self._submit_item(child, values, attachments, channel)
                for child in row.get("components") or []
            ]
            return {"type": 1, "id": row.get("id"), "components": children}
        return {"type": row.get("type"), "id": row.get("id")}

    def _submit_item(
        self,
        item: dict[str, Any],
        values: dict[str, ModalValue],
        attachments: dict[str, dict[str, Any]],
        channel: Channel,
    ) -> dict[str, Any]:
        kind, custom_id = item.get("type"), str(item.get("custom_id"))
        out: dict[str, Any] = {"type": kind, "id": item.get("id"), "custom_id": custom_id}
        required = item.get("required", True)
        given = values.get(custom_id)
        if kind == 4:
            text = "" if given is None else given
            if not isinstance(text, str):
                raise DriverError(f"{custom_id!r} is a text input: give a str")
            if required and not text:
                raise DriverError(f"{custom_id!r} is required")
            low, high = item.get("min_length", 0), item.get("max_length", 4000)
            if text and not low <= len(text) <= high:
                raise DriverError(f"{custom_id!r} must be {low}-{high} characters")
            out["value"] = text
            return out
        picked = list(given or [])
        low = item.get("min_values", 1 if required else 0)
        high = item.get("max_values", 1)
        if not picked and required is False:
            low = 0
        if not low <= len(picked) <= high:
            raise DriverError(f"{custom_id!r} takes {low}-{high} values, not {len(picked)}")
        if kind == 19:
            ids = []
            limit = self.world.file_limit(channel)
            for entry in picked:
                if not isinstance(entry, tuple):
                    raise DriverError(f"{custom_id!r} is a file upload: give (name, bytes)")
                filename, data = entry
                if len(data) > limit:
                    raise DriverError(f"{filename} is over the {limit}-byte upload limit")
                stored = self.world.store_attachment(channel, filename, data, ephemeral=True)
                attachments[str(stored.id)] = self.world.attachment_payload(stored)
                ids.append(str(stored.id))
            out["values"] = ids
            return out
        if kind == 3:
            allowed = {o.get("value") for o in item.get("options") or []}
            if any(v not in allowed for v in picked):
                raise DriverError(f"{custom_id!r} has no such options: {picked}")
        out["values"] = [str(v) for v in picked]
        return out

    async def _dispatch(
        self,
        kind: int,
        member: Actor,
        channel: Channel,
        data: dict[str, Any],
        message: Message | None = None,
    ) -> InteractionHandle:
        user = self._user(member, channel)
        if not self.gateway.ready_sessions:
            raise DriverError("the bot is not connected to the gateway")
        guild = self.world.guild_of(channel)
        interaction_id = self.world.new_id()
        token = "fakecord." + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.world.app_id),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(channel.id),
            "channel": self.world.channel_payload(channel, for_user=user.id),
            "app_permissions": str(self.world.permissions(self.world.bot.id, channel)),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": self.world.file_limit(channel),
            "context": 1 if guild is None else 0,
        }
        if guild is None:
            payload["user"] = user.payload()
            payload["authorizing_integration_owners"] = {"0": "0"}
        else:
            member_here = guild.members[user.id]
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=self.world.member_payload(member_here, channel),
                authorizing_integration_owners={"0": str(guild.id)},
            )
        if message is not None:
            payload["message"] = self.world.message_payload(message)
        handle = InteractionHandle(
            interaction_id,
            token,
            kind,
            channel.id,
            user.id,
            payload,
            source_message_id=None if message is None else message.id,
        )
        self.rest.interactions[interaction_id] = handle
        self.rest.by_token[token] = handle
        handle.dispatched_at = self.config.clock()
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return handle
